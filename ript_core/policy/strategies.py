"""Trainable-parameter strategies: ``full``, ``expert``, ``lora`` (issue 12).

A full-size PI0 has 3.5B parameters; full fine-tuning with AdamW needs
~56 GB before any activation, more than a 24–48 GB card. Two cheaper
strategies keep most weights frozen:

- ``expert``: the action expert (Gemma-300M) and the action/state/time
  projections train; the VLM is frozen. Since no VLM parameter needs a
  gradient, :meth:`PI0Policy.encode_prefix` runs the prefix under
  ``no_grad``: the update back-propagates through the expert only.
- ``lora``: ``peft`` LoRA adapters on the attention/MLP linears of the
  Gemma stacks named in ``policy.lora.targets``; the base weights are
  frozen, the projections train in full (``policy.lora.train_projections``). With ``targets=["expert"]`` the
  VLM has no adapter and its prefix is computed without grad as well.

Frozen tensors are never touched by the optimizer (it only receives
:func:`trainable_parameters`), so they stay bit-identical through training.

Checkpoints of ``expert`` / ``lora`` policies hold only what trains
(:func:`save_trainable`): ``trainable.safetensors`` (the fully trained
tensors) and, for LoRA, the adapters in peft's format
(``adapter_config.json`` + ``adapter_model.safetensors``, keys as
``PeftModel.save_pretrained`` writes them), plus ``strategy.json`` naming the
base checkpoint the frozen weights come from (see
:mod:`ript_core.policy.io.checkpoint`). :func:`merge_lora` folds adapters into
the base weights for ``ript export --merge``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ript_core.policy.config import LoraSettings

if TYPE_CHECKING:
    from ript_core.policy.policy import PI0Policy

STRATEGY_FILE = "strategy.json"
TRAINABLE_FILE = "trainable.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_NAME = "default"
#: peft's ``PeftModel.save_pretrained`` prefixes adapter keys with this.
PEFT_PREFIX = "base_model.model."
LORA_INSTALL = 'pip install "ript-core[lora]"  (or: pip install peft)'

# module-path prefixes of the two Gemma stacks inside PI0ForConditionalGeneration
_STACKS = {"vlm": r"model\.vlm\.language_model", "expert": r"model\.dit"}


class StrategyError(ValueError):
    """A strategy cannot be applied, saved or loaded as asked."""


def _peft() -> Any:
    try:
        import peft
    except ModuleNotFoundError as exc:
        raise StrategyError(
            f"policy.strategy='lora' needs the peft package, which is not installed: "
            f"{LORA_INSTALL}; or choose policy.strategy 'expert' or 'full'"
        ) from exc
    return peft


def lora_target_regex(settings: LoraSettings) -> str:
    """peft ``target_modules`` regex (full match on module names): the chosen
    linears of the decoder layers of the chosen stacks -- never SigLIP."""
    stacks = "|".join(_STACKS[t] for t in settings.targets)
    mods = "|".join(settings.modules)
    return rf"({stacks})\.layers\.\d+\.(self_attn|mlp)\.({mods})"


def is_projection(name: str) -> bool:
    """The action/state/time projections around the expert (everything outside
    the two stacks): trained by every strategy."""
    return not name.startswith(("model.vlm.", "model.dit."))


def has_lora(model: nn.Module) -> bool:
    return any(".lora_" in n for n, _ in model.named_parameters())


def _inject_lora(model: nn.Module, settings: LoraSettings) -> None:
    peft = _peft()
    from peft.tuners.lora import LoraModel

    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=lora_target_regex(settings),
        bias="none",
    )
    # LoraModel injects the adapters in place (the module tree and every
    # non-adapter parameter name stay, the adapted linears become
    # ``<name>.base_layer`` + ``<name>.lora_A/B.default``); lora_B starts at
    # zero, so the fresh adapter changes no output bit.
    LoraModel(model, config, ADAPTER_NAME)


def apply_strategy(policy: PI0Policy) -> None:
    """Set ``requires_grad`` (and inject LoRA adapters) per ``policy.config``."""
    cfg, model = policy.config, policy.model
    vlm = model.model.vlm
    if cfg.strategy != "lora" and has_lora(model):
        raise StrategyError(
            f"policy.strategy={cfg.strategy!r} but the model carries LoRA adapters: merge them "
            "first (ript export --merge CKPT OUT, or strategies.merge_lora)"
        )
    if cfg.strategy == "full":
        # the historical flags: VLM per train_vlm, its vision side per train_vision
        model.requires_grad_(True)
        vlm.requires_grad_(cfg.train_vlm)
        if not (cfg.train_vlm and cfg.train_vision):
            vlm.vision_tower.requires_grad_(False)
            vlm.multi_modal_projector.requires_grad_(False)
        return
    if cfg.strategy == "expert":
        model.requires_grad_(True)
        vlm.requires_grad_(False)
        return
    if not has_lora(model):
        _inject_lora(model, cfg.lora)
    projections = cfg.lora.train_projections
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or (projections and is_projection(name)))


def trainable_parameters(policy: PI0Policy) -> list[nn.Parameter]:
    """What the optimizer receives, in module order (stable across save/load)."""
    return [p for p in policy.model.parameters() if p.requires_grad]


def named_trainable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' PI0 keys, without adapters: a
    LoRA-wrapped linear's ``<name>.base_layer.weight`` is ``<name>.weight``.
    With adapters these are the *frozen base* values, not the merged ones."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


# ---- merge ---------------------------------------------------------------------------


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base linear and remove the wrappers, in
    place: the result is a plain ``PI0ForConditionalGeneration`` whose
    state-dict keys are transformers' own."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, module in wrapped:
        module.merge(adapter_names=[ADAPTER_NAME])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


# ---- checkpoint files --------------------------------------------------------------------


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
        peft = _peft()
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
    saved = load_file(str(directory / TRAINABLE_FILE))
    if policy.config.strategy == "lora":
        raw = load_file(str(directory / ADAPTER_WEIGHTS))
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
