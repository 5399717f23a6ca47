"""Save and load policies from local directories, in four layouts, offline.

- **ript** (what :func:`save_policy` writes): a transformers checkpoint
  (``config.json`` + ``model.safetensors``) plus ``policy.json`` (our
  config), ``stats.json``, ``pipeline.json`` (the input/output transforms,
  :mod:`ript_core.policy.io.pipeline`) and the tokenizer (``tokenizer.model``
  or ``tokenizer.json``).
- **transformers**: ``config.json`` with ``model_type: pi0`` and
  safetensors with transformers' keys (``model.vlm.*``, ``model.dit.*``,
  ``embed_action_time.*``, ``action_out_proj.*``); stats must be given or
  lie beside it as ``stats.json``.
- **lerobot**: ``model.safetensors`` with ``model.paligemma_with_expert.*``
  keys, lerobot's ``config.json`` (``type: pi0``), stats from its
  ``policy_preprocessor*.safetensors`` normaliser files (or the older
  ``normalize_inputs.*`` buffers inside the weights).
- **openpi** (PyTorch-converted): ``model.safetensors`` with
  ``paligemma_with_expert.*`` and bare ``state_proj.*`` ... keys, openpi's
  ``config.json`` and ``assets/<asset_id>/norm_stats.json``. openpi does not
  store its training config's name in the checkpoint, and the name decides
  the transforms (``pi0_libero`` adds the state to the actions): it must be
  given (``openpi_config="pi0_libero"``) or the load fails.

Every load is strict: a missing or unexpected weight, a shape mismatch or
missing normalisation stats raises :class:`CheckpointError` naming the keys
and the layouts we accept -- never a silent partial load (transformers'
``from_pretrained`` only warns). The few keys known to be unused are dropped
by name: the expert's token embedding / lm_head (the expert only receives
embeddings) and PaliGemma's ``lm_head`` (tied to the token embedding).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import PI0Config, PI0ForConditionalGeneration

from ript_core.config import structure, unstructure
from ript_core.policy.config import LoraSettings, PolicyConfig
from ript_core.policy.io.pipeline import (
    OPENPI_CONFIGS,
    PIPELINE_FILE,
    Pipeline,
    lerobot_pipeline,
)
from ript_core.policy.io.pipeline import openpi_config as get_openpi_config
from ript_core.policy.io.presets import Architecture, resolve_architecture
from ript_core.policy.io.stats import STATS_FILE, FeatureStats, NormStats
from ript_core.policy.io.strategy_files import (
    STRATEGY_FILE,
    load_trainable,
    resolve_base,
    save_trainable,
    write_strategy_file,
)
from ript_core.policy.io.tokenizer import JSON_FILE, SP_FILE, PromptTokenizer, load_tokenizer
from ript_core.policy.model import build_model, drop_unused_expert_embedding
from ript_core.policy.policy import PI0Policy
from ript_core.policy.strategies import StrategyError, plain_state_dict

POLICY_FILE = "policy.json"
WEIGHTS_FILE = "model.safetensors"
FORMATS = ("ript", "transformers", "lerobot", "openpi")

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


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors`` or the shards named in ``model.safetensors.index.json``."""
    out: dict[str, torch.Tensor] = {}
    for name in _weight_files(directory):
        out.update(load_file(str(directory / name)))
    return out


def read_safetensors_keys(directory: Path) -> list[str]:
    """The weight names only (no tensor is read): enough to tell the layout."""
    keys: list[str] = []
    for name in _weight_files(directory):
        with safe_open(str(directory / name), framework="pt") as f:
            keys.extend(f.keys())
    return keys


# ---- stats of foreign layouts --------------------------------------------------------


def _lerobot_stats(
    directory: Path, raw: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> NormStats | None:
    flat: dict[str, torch.Tensor] = {}
    for path in sorted(directory.glob("policy_preprocessor*normalizer*.safetensors")):
        flat.update(load_file(str(path)))
    for path in sorted(directory.glob("policy_postprocessor*normalizer*.safetensors")):
        flat.update(load_file(str(path)))
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


def _openpi_stats(directory: Path, asset_id: str | None = None) -> NormStats | None:
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


def _foreign_overrides(layout: str, config: Mapping[str, Any]) -> dict[str, Any]:
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


# ---- public API ------------------------------------------------------------------------


def save_policy(policy: PI0Policy, directory: str | Path, *, as_base: bool = False) -> Path:
    """Write weights (safetensors), configs, stats, pipeline and tokenizer to ``directory``.

    ``expert`` / ``lora`` policies (:mod:`.strategies`) write only what trains
    plus ``strategy.json`` naming ``policy.base_checkpoint``, whose frozen
    weights :func:`load_policy` reads back; with no base checkpoint on disk
    yet the frozen base weights go into ``directory`` itself. ``as_base``:
    write the frozen base alone (every weight, adapters left out, strategy
    ``full``) -- what later delta checkpoints reference.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    policy.arch.pi0_config.to_json_file(str(out / "config.json"))
    delta = policy.config.strategy != "full" and not as_base
    if delta:
        files = save_trainable(policy, out)
        write_strategy_file(out, policy.config.strategy, policy.base_checkpoint, files)
    if not delta or policy.base_checkpoint is None:
        weights = {
            k: v.detach().contiguous().cpu() for k, v in plain_state_dict(policy.model).items()
        }
        save_file(
            weights,
            str(out / WEIGHTS_FILE),
            metadata={"format": "pt", "layout": "transformers-pi0"},
        )
    config = unstructure(policy.config)
    config["tokenizer_path"] = None  # the tokenizer now lives in the directory
    if as_base:
        config["strategy"] = "full"
    (out / POLICY_FILE).write_text(json.dumps({"policy": config}, indent=2))
    policy.stats.save(out)
    policy.pipeline.save(out)
    policy.tokenizer.save(out)
    return out


@attrs.frozen
class ResolvedCheckpoint:
    """Everything a checkpoint directory determines, short of its weights."""

    path: Path
    layout: str
    config: PolicyConfig
    arch: Architecture
    stats: NormStats
    pipeline: Pipeline
    tokenizer: PromptTokenizer


def _resolve_pipeline(
    path: Path, layout: str, openpi_name: str | None, pipeline: Pipeline | None
) -> Pipeline:
    if pipeline is not None:
        return pipeline
    if layout == "openpi":
        if openpi_name is None:
            raise CheckpointError(
                f"{path}: an openpi checkpoint does not record its training config, and the "
                "config decides its transforms (pi0_libero adds the state to the actions); pass "
                f"openpi_config=NAME (known: {', '.join(sorted(OPENPI_CONFIGS))}; CLI: "
                "--openpi-config NAME) or pipeline=Pipeline(...)"
            )
        try:
            return get_openpi_config(openpi_name).pipeline
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
    if openpi_name is not None:
        raise CheckpointError(
            f"{path}: openpi_config={openpi_name!r} given but the checkpoint has the {layout} "
            "layout, not openpi's"
        )
    if (path / PIPELINE_FILE).is_file():
        try:
            return Pipeline.load(path)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path / PIPELINE_FILE}: {exc}") from exc
    if layout == "lerobot":
        return lerobot_pipeline()
    # a ript checkpoint saved before pipelines existed, or a bare transformers one
    return Pipeline(origin=layout)


def resolve_checkpoint(
    directory: str | Path,
    *,
    preset: str | None = None,
    stats: NormStats | None = None,
    tokenizer: PromptTokenizer | None = None,
    openpi_config: str | None = None,
    pipeline: Pipeline | None = None,
    **overrides: Any,
) -> ResolvedCheckpoint:
    """Config, architecture, stats, pipeline and tokenizer of a checkpoint,
    without reading its weights (only their names); every missing piece is
    an error here, before anything slow."""
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not a directory (load_policy reads local checkpoints only)"
        )
    layout = detect_layout(path, read_safetensors_keys(path))
    config_json = (
        json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    )
    resolved_pipeline = _resolve_pipeline(path, layout, openpi_config, pipeline)

    if layout == "ript":
        saved = json.loads((path / POLICY_FILE).read_text())["policy"]
        if preset is not None:
            saved["preset"] = preset
        saved.update(overrides)
        cfg = structure(PolicyConfig, saved, source=str(path / POLICY_FILE))
    else:
        fields = {"preset": preset or "pi0", **_foreign_overrides(layout, config_json), **overrides}
        if layout == "openpi" and openpi_config is not None and "cameras" not in overrides:
            cams = resolved_pipeline.cameras
            if cams is not None:
                fields["cameras"] = [c.name for c in cams]
        cfg = structure(PolicyConfig, fields, source=f"{path} ({layout})")

    pi0_config = None
    if config_json.get("model_type") == "pi0":
        pi0_config = PI0Config.from_dict(config_json)
    arch = resolve_architecture(cfg, pi0_config)

    if stats is None:
        if (path / STATS_FILE).is_file():
            stats = NormStats.load(path)
        elif layout == "lerobot":
            stats = _lerobot_stats(path, read_safetensors(path), config_json)
        elif layout == "openpi":
            asset = (
                OPENPI_CONFIGS[openpi_config].asset_id if openpi_config in OPENPI_CONFIGS else None
            )
            stats = _openpi_stats(path, asset)
        if stats is None:
            where = {
                "lerobot": "policy_preprocessor*normalizer*.safetensors with observation.state.* and action.*",
                "openpi": "assets/<asset_id>/norm_stats.json",
            }.get(layout, STATS_FILE)
            raise CheckpointError(
                f"{path}: no normalisation stats found (expected {where}, or pass stats=); a "
                "checkpoint without its stats would produce wrong actions"
            )

    if tokenizer is None:
        if (path / SP_FILE).is_file() or (path / JSON_FILE).is_file():
            tokenizer = load_tokenizer(path)
        elif cfg.tokenizer_path is not None:
            tokenizer = load_tokenizer(cfg.tokenizer_path)
        else:
            raise CheckpointError(
                f"{path}: no {SP_FILE} / {JSON_FILE} in the checkpoint; pass tokenizer_path= "
                "(the PaliGemma tokenizer.model) or tokenizer="
            )
    try:
        resolved_pipeline.camera_slots(arch.cameras)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    return ResolvedCheckpoint(path, layout, cfg, arch, stats, resolved_pipeline, tokenizer)


def load_policy(
    directory: str | Path,
    *,
    preset: str | None = None,
    stats: NormStats | None = None,
    tokenizer: PromptTokenizer | None = None,
    openpi_config: str | None = None,
    pipeline: Pipeline | None = None,
    **overrides: Any,
) -> PI0Policy:
    """Load any of the four layouts from a local directory (never a hub id).

    ``preset`` (default ``pi0``) gives the architecture of lerobot/openpi
    checkpoints, which carry no transformers config, and the camera slots /
    prompt length of plain transformers ones; ``openpi_config`` names an
    openpi checkpoint's training config (required for that layout, see
    :data:`~ript_core.policy.io.pipeline.OPENPI_CONFIGS`); ``pipeline``
    overrides the checkpoint's transforms; ``overrides`` are
    :class:`PolicyConfig` fields (device, dtype, SDE settings, ...).
    """
    if (Path(directory) / STRATEGY_FILE).is_file():
        return _load_delta(
            Path(directory), stats=stats, tokenizer=tokenizer, pipeline=pipeline, **overrides
        )
    res = resolve_checkpoint(
        directory,
        preset=preset,
        stats=stats,
        tokenizer=tokenizer,
        openpi_config=openpi_config,
        pipeline=pipeline,
        **overrides,
    )
    policy = PI0Policy(
        res.config,
        _base_model(res.path, res.arch),
        res.arch,
        res.tokenizer,
        res.stats,
        res.pipeline,
    )
    if policy.config.strategy != "full":
        # this checkpoint's weights are the frozen base of what trains from here
        policy.base_checkpoint = res.path.resolve()
    return policy


def _base_model(path: Path, arch: Architecture) -> PI0ForConditionalGeneration:
    raw = read_safetensors(path)
    layout = detect_layout(path, list(raw))
    weights, _dropped = to_transformers_keys(raw, layout)
    # Built on CPU in float32 so that bf16 or fp32 checkpoints load exactly;
    # PI0Policy then applies the configured dtype and device.
    model = build_model(arch, PolicyConfig(device="cpu"))
    drop_unused_expert_embedding(model)
    load_weights_strict(model, weights, str(path), layout)
    return model


def _load_delta(
    path: Path,
    *,
    stats: NormStats | None,
    tokenizer: PromptTokenizer | None,
    pipeline: Pipeline | None,
    **overrides: Any,
) -> PI0Policy:
    """A checkpoint holding only what an ``expert`` / ``lora`` strategy trains:
    the base checkpoint's weights, then the saved trainable tensors on top."""
    info = json.loads((path / STRATEGY_FILE).read_text())
    strategy = info["strategy"]
    original = json.loads((path / POLICY_FILE).read_text())["policy"]
    saved = {**original, **overrides}
    if isinstance(saved.get("lora"), LoraSettings):
        saved["lora"] = unstructure(saved["lora"])
    if saved.get("strategy") != strategy or (
        strategy == "lora" and saved.get("lora") != original.get("lora")
    ):
        raise CheckpointError(
            f"{path}: holds {strategy} tensors; it can only be loaded with the strategy and "
            f"policy.lora settings it was trained with. To change strategy, first write a "
            f"plain checkpoint: ript export --merge {path} OUT"
        )
    cfg = structure(PolicyConfig, saved, source=str(path / POLICY_FILE))
    arch = resolve_architecture(cfg, PI0Config.from_json_file(str(path / "config.json")))
    try:
        base = resolve_base(path, info)
    except StrategyError as exc:
        raise CheckpointError(str(exc)) from exc
    if stats is None:
        stats = NormStats.load(path)
    if pipeline is None:
        pipeline = Pipeline.load(path) if (path / PIPELINE_FILE).is_file() else Pipeline()
    if tokenizer is None:
        tokenizer = load_tokenizer(path)
    policy = PI0Policy(cfg, _base_model(base, arch), arch, tokenizer, stats, pipeline)
    try:
        load_trainable(policy, path, str(path))
    except StrategyError as exc:
        raise CheckpointError(str(exc)) from exc
    policy.base_checkpoint = base if info["base"]["relative"] != "." else None
    return policy
