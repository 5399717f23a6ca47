"""``ript info``: the resolved pipeline of a checkpoint, without loading its weights."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape

from ript_core.cli.checkpoint_options import add_checkpoint_options, checkpoint_load_options
from ript_core.cli.console import console
from ript_core.cli.registry import command


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", help="a checkpoint directory (ript, transformers, lerobot, openpi)"
    )
    add_checkpoint_options(p)
    p.add_argument("--json", action="store_true", help="print the pipeline as JSON")


def _fmt(values: list[float] | None) -> str:
    return "-" if values is None else "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


@command("info", "print a checkpoint's resolved input/output pipeline", _info_args)
def cmd_info(ns: argparse.Namespace) -> int:
    from ript_core.policy.io.checkpoint import CheckpointError, resolve_checkpoint
    from ript_core.policy.io.pipeline import describe

    try:
        res = resolve_checkpoint(ns.checkpoint, **checkpoint_load_options(ns))
    except (CheckpointError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from exc
    info = describe(
        res.pipeline,
        res.stats,
        res.arch,
        tokenizer=res.tokenizer,
        dtype=res.config.dtype,
        layout=res.layout,
    )
    if ns.json:
        # plain text, never wrapped: the output is meant for json.loads / jq
        console.print(json.dumps(info, indent=2), soft_wrap=True, highlight=False, markup=False)
        return 0
    img, prompt, state, act, norm = (
        info[k] for k in ("images", "prompt", "state", "actions", "normalisation")
    )
    lines = [
        f"checkpoint: {res.path} ({res.layout} layout, pipeline from {info['origin']})",
        f"images: {img['size']} px, resize {img['resize']}, padding {img['padding']}",
    ]
    for cam in img["cameras"]:
        lines.append(
            f"  slot {cam['slot']} <- input {cam['input']!r}, missing: {cam['if_missing']}"
        )
    lines += [
        f"prompt: {prompt['format']} format, {prompt['max_tokens']} tokens, {prompt['tokenizer']}",
        f"state: {state['dim']} dims, {state['order']} to {state['padded_to']}",
        f"actions: {act['dim']} of {act['model_dim']} dims, chunk {act['chunk']}; "
        f"delta->absolute: {act['delta_to_absolute']}",
        f"normalisation: {norm['mode']}, eps {norm['eps']:g}, {norm['convention']} convention, "
        f"stats from {norm['source'] or '?'}",
    ]
    for feature in ("state", "actions"):
        stats = norm[feature]
        lines.append(f"  {feature} mean {_fmt(stats['mean'])}")
        lines.append(f"  {feature} std  {_fmt(stats['std'])}")
        if stats["q01"] is not None:
            lines.append(f"  {feature} q01  {_fmt(stats['q01'])}")
            lines.append(f"  {feature} q99  {_fmt(stats['q99'])}")
    lines.append(f"sampling: {info['sampling']['steps']} steps, {info['sampling']['dtype']}")
    for line in lines:
        console.print(escape(line), highlight=False, soft_wrap=True)
    return 0


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", help="a checkpoint directory (transformers, lerobot, openpi, ript)"
    )
    p.add_argument("out", help="directory to write the ript checkpoint to")
    add_checkpoint_options(p)


@command(
    "convert",
    "save any checkpoint as a ript checkpoint, its pipeline and stats included",
    _convert_args,
)
def cmd_convert(ns: argparse.Namespace) -> int:
    from ript_core.policy.io.checkpoint import CheckpointError, load_policy, save_policy

    try:
        policy = load_policy(ns.checkpoint, **checkpoint_load_options(ns))
    except (CheckpointError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from exc
    out = save_policy(policy, ns.out)
    console.print(
        escape(f"wrote {out} (pipeline from {policy.pipeline.origin}); `ript info {out}` shows it"),
        highlight=False,
    )
    return 0
