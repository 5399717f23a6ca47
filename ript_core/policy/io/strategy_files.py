"""The checkpoint files of ``expert`` / ``lora`` policies: only what trains.

``trainable.safetensors`` holds the fully trained tensors; for LoRA the
adapters are in peft's format (``adapter_config.json`` +
``adapter_model.safetensors``, keys as ``PeftModel.save_pretrained`` writes
them); ``strategy.json`` names the base checkpoint the frozen weights come
from, with a fingerprint that catches a replaced base
(:mod:`ript_core.policy.io.checkpoint` reads and writes them).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from ript_core.policy.io.layouts import load_tensors
from ript_core.policy.strategies import ADAPTER_NAME, StrategyError, named_trainable, peft_module

if TYPE_CHECKING:
    from ript_core.policy.policy import PI0Policy

STRATEGY_FILE = "strategy.json"
TRAINABLE_FILE = "trainable.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: peft's ``PeftModel.save_pretrained`` prefixes adapter keys with this.
PEFT_PREFIX = "base_model.model."


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().cpu()


def save_trainable(policy: PI0Policy, directory: Path) -> list[str]:
    """Write what trains into ``directory``; returns the file names written.

    ``expert``: every trainable tensor in ``trainable.safetensors``. ``lora``:
    the adapters in peft's format (``adapter_config.json`` +
    ``adapter_model.safetensors``) and the projections in
    ``trainable.safetensors``.
    """
    model = policy.model
    files: list[str] = []
    full = {n: _cpu(p) for n, p in named_trainable(model) if ".lora_" not in n}
    if policy.config.strategy == "lora":
        peft = peft_module()
        adapters = peft.get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
        save_file(
            {PEFT_PREFIX + k: _cpu(v) for k, v in adapters.items()},
            str(directory / ADAPTER_WEIGHTS),
            metadata={"format": "pt"},
        )
        model.peft_config[ADAPTER_NAME].save_pretrained(str(directory))
        files += [ADAPTER_WEIGHTS, ADAPTER_CONFIG]
    save_file(full, str(directory / TRAINABLE_FILE), metadata={"format": "pt"})
    files.append(TRAINABLE_FILE)
    return files


@torch.no_grad()
def load_trainable(policy: PI0Policy, directory: Path, source: str) -> None:
    """Copy the saved trainable tensors into ``policy``'s, strictly: every
    trainable tensor must be in the files, nothing else may be."""
    model = policy.model
    saved = load_tensors(directory / TRAINABLE_FILE)
    if policy.config.strategy == "lora":
        raw = load_tensors(directory / ADAPTER_WEIGHTS)
        for key, value in raw.items():
            # peft stores "<module>.lora_A.weight"; the live name carries the adapter name
            name = key.removeprefix(PEFT_PREFIX)
            for part in (".lora_A.", ".lora_B."):
                name = name.replace(part, f"{part}{ADAPTER_NAME}.")
            saved[name] = value
    params = dict(named_trainable(model))
    missing = sorted(set(params) - set(saved))
    unexpected = sorted(set(saved) - set(params))
    shapes = sorted(
        f"{k}: saved {tuple(saved[k].shape)} vs model {tuple(params[k].shape)}"
        for k in set(params) & set(saved)
        if saved[k].shape != params[k].shape
    )
    if missing or unexpected or shapes:
        raise StrategyError(
            f"{source}: the saved trainable tensors do not fit the {policy.config.strategy} "
            f"policy (missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {shapes[:5]}); "
            "was it saved with other policy.lora settings or another strategy?"
        )
    for name, p in params.items():
        p.copy_(saved[name])


def weights_fingerprint(directory: Path) -> dict[str, Any]:
    """A cheap identity of a checkpoint's weight files: size and SHA-256 of the
    safetensors header (names, shapes, offsets) plus the first and last 4 MiB.
    Hashing all 7 GB of a full pi0 on every resume would cost more than the
    load; this catches a replaced or re-saved base."""
    out: dict[str, Any] = {}
    for path in sorted(directory.glob("model*.safetensors")):
        size = path.stat().st_size
        h = hashlib.sha256()
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            h.update(f.read(min(n, size)))
            f.seek(0)
            h.update(f.read(4 << 20))
            f.seek(max(size - (4 << 20), 0))
            h.update(f.read())
        out[path.name] = {"size": size, "sha256": h.hexdigest()}
    return out


def write_strategy_file(
    directory: Path, strategy: str, base: Path | None, files: list[str]
) -> None:
    """``strategy.json``: the strategy, the files holding what trains, and the
    base checkpoint (relative to ``directory`` and absolute: a moved run
    directory still resolves; ``"."`` when the base weights are inside)."""
    if base is None:
        ref: dict[str, Any] = {"relative": ".", "absolute": None, "fingerprint": None}
    else:
        base = base.resolve()
        ref = {
            "relative": os.path.relpath(base, directory.resolve()),
            "absolute": str(base),
            "fingerprint": weights_fingerprint(base),
        }
    (directory / STRATEGY_FILE).write_text(
        json.dumps({"strategy": strategy, "files": files, "base": ref}, indent=2)
    )


def resolve_base(directory: Path, info: dict[str, Any]) -> Path:
    """The base checkpoint a delta checkpoint names, checked against its fingerprint."""
    ref = info["base"]
    candidates = [(directory / ref["relative"]).resolve()]
    if ref.get("absolute"):
        candidates.append(Path(ref["absolute"]))
    base = next((c for c in candidates if c.is_dir()), None)
    if base is None:
        raise StrategyError(
            f"{directory}: holds only the {info['strategy']} strategy's trainable tensors; its "
            f"base checkpoint is missing (looked at {[str(c) for c in candidates]}). Restore that "
            "directory, or export a self-contained checkpoint from a machine that has it "
            "(ript export --merge)"
        )
    want = ref.get("fingerprint")
    if want is not None and weights_fingerprint(base) != want:
        raise StrategyError(
            f"{directory}: its base checkpoint {base} has changed since this checkpoint was "
            "written (weight files differ); the frozen weights would not be the trained "
            "policy's. Restore the original base checkpoint"
        )
    return base
