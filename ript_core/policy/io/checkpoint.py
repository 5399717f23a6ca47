"""Save and load policies from local directories, in four layouts, offline.

- **ript** (what :func:`save_policy` writes): a transformers checkpoint
  (``config.json`` + ``model.safetensors``) plus ``policy.json`` (our
  config), ``stats.json``, ``pipeline.json`` (the input/output transforms,
  :mod:`ript_core.policy.io.pipeline`) and the tokenizer (``tokenizer.model``
  or ``tokenizer.json``); a policy trained by ``ript train`` also carries
  ``training_env.json`` (:data:`TRAINING_ENV_FILE`), the env it was trained in.
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
from pathlib import Path
from typing import Any

import attrs
from safetensors.torch import save_file
from transformers import PI0Config, PI0ForConditionalGeneration

from ript_core.config import structure, unstructure
from ript_core.policy.config import LoraSettings, PolicyConfig
from ript_core.policy.io.layouts import (
    POLICY_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    detect_layout,
    foreign_overrides,
    lerobot_stats,
    load_weights_strict,
    openpi_stats,
    read_safetensors,
    read_safetensors_keys,
    to_transformers_keys,
)
from ript_core.policy.io.pipeline import (
    OPENPI_CONFIGS,
    PIPELINE_FILE,
    Pipeline,
    lerobot_pipeline,
)
from ript_core.policy.io.pipeline import openpi_config as get_openpi_config
from ript_core.policy.io.presets import Architecture, resolve_architecture
from ript_core.policy.io.stats import STATS_FILE, NormStats
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

FORMATS = ("ript", "transformers", "lerobot", "openpi")
#: ``policy.training_env``: the env settings of the run that trained the policy,
#: written by the trainer (``ript_core.rl.training_env``) and read back by ``ript
#: eval``; opaque to the policy, which only carries it from checkpoint to checkpoint
TRAINING_ENV_FILE = "training_env.json"


def read_training_env(directory: str | Path) -> dict[str, Any] | None:
    """The ``training_env.json`` of a checkpoint directory, or None (no such file:
    not trained by ``ript train``, or saved before the file existed)."""
    path = Path(directory) / TRAINING_ENV_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); delete it or fix it") from exc


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
    if policy.training_env is not None:
        (out / TRAINING_ENV_FILE).write_text(json.dumps(policy.training_env, indent=2))
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


def _check_saved_agree(path: Path, saved: dict[str, Any], config_json: dict[str, Any]) -> None:
    """A ript checkpoint's policy.json and config.json describe one architecture:
    when they disagree, which one the weights were trained at is unknown."""
    for ours, theirs in (("chunk_size", "chunk_size"), ("num_steps", "num_inference_steps")):
        a, b = saved.get(ours), config_json.get(theirs)
        if a is not None and b is not None and a != b:
            raise CheckpointError(
                f"{path}: {POLICY_FILE} says {ours}={a} but config.json says {theirs}={b}; "
                "edit one of them to match the other (the one the weights were trained at)"
            )


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
        _check_saved_agree(path, saved, config_json)
        if preset is not None:
            saved["preset"] = preset
        saved.update(overrides)
        cfg = structure(PolicyConfig, saved, source=str(path / POLICY_FILE))
    else:
        fields = {"preset": preset or "pi0", **foreign_overrides(layout, config_json), **overrides}
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
            stats = lerobot_stats(path, read_safetensors(path), config_json)
        elif layout == "openpi":
            asset = (
                OPENPI_CONFIGS[openpi_config].asset_id if openpi_config in OPENPI_CONFIGS else None
            )
            stats = openpi_stats(path, asset)
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
                f"{path}: no {SP_FILE} / {JSON_FILE} in the checkpoint (openpi's converted "
                "layout has none); pass the PaliGemma tokenizer.model: CLI --tokenizer PATH, "
                "Python tokenizer_path= or tokenizer="
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
    policy.training_env = read_training_env(res.path)
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
    policy.training_env = read_training_env(path)
    return policy
