"""The foreign checkpoint layouts (transformers, lerobot, openpi): their weight
keys mapped onto transformers' PI0, a strict weight load, and their
normalisation stats.

- **transformers**: safetensors with transformers' keys (``model.vlm.*``,
  ``model.dit.*``, ``embed_action_time.*``, ``action_out_proj.*``).
- **lerobot**: ``model.paligemma_with_expert.*`` keys; stats from its
  ``policy_preprocessor*.safetensors`` normaliser files (or the older
  ``normalize_inputs.*`` buffers inside the weights).
- **openpi** (PyTorch-converted): ``paligemma_with_expert.*`` and bare
  ``state_proj.*`` ... keys; stats in ``assets/<asset_id>/norm_stats.json``.

Every load is strict (:func:`load_weights_strict`): a missing or unexpected
weight or a shape mismatch raises :class:`CheckpointError` naming the keys and
the layouts we accept. The few keys known to be unused are dropped by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ript_core.policy.io.stats import FeatureStats, NormStats

POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"

EXPECTED_LAYOUTS = (
    "accepted layouts: transformers keys (model.vlm.*, model.dit.*, embed_action_time.*, "
    "action_out_proj.*); lerobot keys (model.paligemma_with_expert.paligemma.model.*, "
    "model.paligemma_with_expert.gemma_expert.model.*, model.state_proj.*, ...); openpi keys "
    "(paligemma_with_expert.paligemma.model.*, paligemma_with_expert.gemma_expert.model.*, "
    "state_proj.*, action_in_proj.*, action_time_mlp_in.*, action_time_mlp_out.*, "
    "action_out_proj.*)"
)


class CheckpointError(ValueError):
    """A checkpoint directory does not fit the model or lacks something it needs."""


# ---- key mapping ------------------------------------------------------------------

# (pattern, replacement) applied in order to an openpi-style key (lerobot keys
# first lose their leading "model."). Older transformers-4.x PaliGemma layouts
# (paligemma.language_model.model.*) are mapped too.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^paligemma_with_expert\.paligemma\.model\.", "model.vlm."),
    (r"^paligemma_with_expert\.paligemma\.language_model\.model\.", "model.vlm.language_model."),
    (r"^paligemma_with_expert\.paligemma\.vision_tower\.", "model.vlm.vision_tower."),
    (
        r"^paligemma_with_expert\.paligemma\.multi_modal_projector\.",
        "model.vlm.multi_modal_projector.",
    ),
    (r"^paligemma_with_expert\.gemma_expert\.model\.", "model.dit."),
    (
        r"^(state_proj|action_in_proj|action_time_mlp_in|action_time_mlp_out)\.",
        r"embed_action_time.\1.",
    ),
)
_PALIGEMMA_LM_HEAD = re.compile(
    r"^paligemma_with_expert\.paligemma\.(language_model\.)?lm_head\.weight$"
)
_VLM_EMBED = "model.vlm.language_model.embed_tokens.weight"
# Unused by PI0's forward: the expert only gets inputs_embeds.
_UNUSED = re.compile(
    r"^(model\.dit\.embed_tokens\.|paligemma_with_expert\.gemma_expert\.(lm_head|model\.embed_tokens)\.)"
)
_LEROBOT_STATS = re.compile(r"^(normalize_inputs|normalize_targets|unnormalize_outputs)\.")


def to_transformers_keys(
    state_dict: Mapping[str, torch.Tensor], layout: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a state dict to transformers' PI0 keys; returns ``(mapped, dropped)``."""
    mapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    lm_head: torch.Tensor | None = None
    for key, value in state_dict.items():
        name = key
        if layout == "lerobot":
            if _LEROBOT_STATS.match(name):
                dropped.append(key)
                continue
            name = name.removeprefix("model.")
        if _UNUSED.match(name):
            dropped.append(key)
            continue
        if layout in ("lerobot", "openpi"):
            if _PALIGEMMA_LM_HEAD.match(name):
                lm_head = value
                dropped.append(key)
                continue
            for pattern, repl in _RENAMES:
                new = re.sub(pattern, repl, name)
                if new != name:
                    name = new
                    break
        mapped[name] = value
    if lm_head is not None and _VLM_EMBED not in mapped:
        mapped[_VLM_EMBED] = lm_head  # tied weights saved under the head's name
    return mapped, dropped


def detect_layout(directory: Path, keys: list[str]) -> str:
    if (directory / POLICY_FILE).is_file():
        return "ript"
    if any(k.startswith("model.paligemma_with_expert.") for k in keys):
        return "lerobot"
    if any(k.startswith("paligemma_with_expert.") for k in keys):
        return "openpi"
    if any(k.startswith(("model.vlm.", "model.dit.", "embed_action_time.")) for k in keys):
        return "transformers"
    raise CheckpointError(
        f"{directory}: cannot tell the checkpoint layout from its keys "
        f"(first: {sorted(keys)[:5]}); {EXPECTED_LAYOUTS}"
    )


def _listing(title: str, items: list[str], limit: int = 30) -> str:
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}):\n    {shown}{more}"


def load_weights_strict(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: str, layout: str
) -> None:
    """``load_state_dict`` that refuses anything but an exact match, listing every problem."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [f"{source} ({layout} layout) does not fit the model:"]
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if shapes:
            parts.append(_listing("shape mismatches", shapes))
        parts.append("  " + EXPECTED_LAYOUTS)
        raise CheckpointError("\n".join(parts))
    model.load_state_dict(dict(weights), strict=True)


def _weight_files(directory: Path) -> list[str]:
    index = directory / f"{WEIGHTS_FILE}.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    if (directory / WEIGHTS_FILE).is_file():
        return [WEIGHTS_FILE]
    raise CheckpointError(f"{directory}: no {WEIGHTS_FILE} (or sharded index) found")


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file``, with a damaged file named in the error."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: BaseException) -> str:
    size = path.stat().st_size if path.is_file() else 0
    return (
        f"{path} ({size} bytes) is not a readable safetensors file ({exc}): it is truncated, "
        "empty or not a weights file; copy it again or point at another checkpoint"
    )


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors`` or the shards named in ``model.safetensors.index.json``."""
    out: dict[str, torch.Tensor] = {}
    for name in _weight_files(directory):
        out.update(load_tensors(directory / name))
    return out


def read_safetensors_keys(directory: Path) -> list[str]:
    """The weight names only (no tensor is read): enough to tell the layout."""
    keys: list[str] = []
    for name in _weight_files(directory):
        try:
            with safe_open(str(directory / name), framework="pt") as f:
                keys.extend(f.keys())
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(_unreadable(directory / name, exc)) from None
    return keys


# ---- stats of foreign layouts --------------------------------------------------------


def lerobot_stats(
    directory: Path, raw: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> NormStats | None:
    flat: dict[str, torch.Tensor] = {}
    for path in sorted(directory.glob("policy_preprocessor*normalizer*.safetensors")):
        flat.update(load_tensors(path))
    for path in sorted(directory.glob("policy_postprocessor*normalizer*.safetensors")):
        flat.update(load_tensors(path))
    for key, value in raw.items():  # older lerobot: buffers inside the weights
        m = re.match(
            r"^(?:normalize_inputs|normalize_targets|unnormalize_outputs)\.buffer_(.+)\.(\w+)$", key
        )
        if m:
            flat.setdefault(f"{m.group(1).replace('_', '.')}.{m.group(2)}", value)
    if not flat:
        return None

    def feature(prefix: str) -> FeatureStats | None:
        get = {s: flat.get(f"{prefix}.{s}") for s in ("mean", "std", "q01", "q99")}
        if get["mean"] is None or get["std"] is None:
            return None
        return FeatureStats(
            **{k: (v.double().numpy() if v is not None else None) for k, v in get.items()}
        )

    state, actions = feature("observation.state"), feature("action")
    if state is None or actions is None:
        return None
    mapping = config.get("normalization_mapping", {})
    modes = {str(mapping.get(k, "MEAN_STD")).upper() for k in ("STATE", "ACTION")}
    if modes == {"MEAN_STD"}:
        mode = "mean_std"
    elif modes == {"QUANTILES"}:
        mode = "quantile"
    else:
        raise CheckpointError(
            f"{directory}: lerobot normalization_mapping {mapping} is not supported "
            "(need MEAN_STD or QUANTILES for both STATE and ACTION)"
        )
    return NormStats(
        state=state,
        actions=actions,
        mode=mode,
        eps=1e-8,
        convention="lerobot",
        source=f"lerobot:{directory}",
    )


def openpi_stats(directory: Path, asset_id: str | None = None) -> NormStats | None:
    if asset_id is not None and (directory / "assets" / asset_id / "norm_stats.json").is_file():
        # openpi's create_trained_policy reads exactly assets/<asset_id>
        files = [directory / "assets" / asset_id / "norm_stats.json"]
    else:
        files = sorted(directory.glob("assets/**/norm_stats.json"))
    if not files:
        return None
    if len(files) > 1:
        raise CheckpointError(
            f"{directory}: several norm_stats.json ({[str(f) for f in files]}); pass stats= explicitly"
        )
    data = json.loads(files[0].read_text())
    data = data.get("norm_stats", data)
    # openpi uses z-score for pi0 (quantile only for pi0.5/FAST), eps 1e-6.
    return NormStats(
        state=FeatureStats(**{k: data["state"].get(k) for k in ("mean", "std", "q01", "q99")}),
        actions=FeatureStats(**{k: data["actions"].get(k) for k in ("mean", "std", "q01", "q99")}),
        mode="mean_std",
        eps=1e-6,
        source=f"openpi:{files[0]}",
    )


def foreign_overrides(layout: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """PolicyConfig fields a lerobot/openpi config.json determines."""
    if layout == "lerobot":
        pairs = {
            "chunk_size": config.get("chunk_size"),
            "max_state_dim": config.get("max_state_dim"),
            "max_action_dim": config.get("max_action_dim"),
            "num_steps": config.get("num_inference_steps", config.get("num_steps")),
            "max_token_len": config.get("tokenizer_max_length"),
        }
    elif layout == "openpi":
        dim = config.get("action_dim")
        pairs = {
            "chunk_size": config.get("action_horizon"),
            "max_action_dim": dim,
            "max_state_dim": dim,  # openpi pads the state to action_dim
        }
    else:
        pairs = {}
    return {k: v for k, v in pairs.items() if v is not None}
