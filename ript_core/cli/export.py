"""``ript export --merge CKPT OUT``: a self-contained plain PI0 checkpoint.

An ``expert`` / ``lora`` training checkpoint holds only what trains and a
reference to its base checkpoint (:mod:`ript_core.policy.strategies`). Export
folds the LoRA adapters into the base weights and writes every tensor, so
the result loads with transformers'
``PI0ForConditionalGeneration.from_pretrained(OUT)`` and with
``ript_core.policy.load_policy(OUT)``, with no peft and no base checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.markup import escape

from ript_core.cli.checkpoint_options import add_checkpoint_options, checkpoint_load_options
from ript_core.cli.console import console
from ript_core.cli.registry import command


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a policy directory (a training checkpoint's policy/)")
    p.add_argument("out", help="directory to write the plain PI0 checkpoint to")
    p.add_argument(
        "--merge",
        action="store_true",
        required=True,
        help="fold LoRA adapters / trained deltas into the base weights (required: the only "
        "export there is, named so that the command says what it does)",
    )
    add_checkpoint_options(p)


@command("export", "merge a lora/expert checkpoint into a plain PI0 checkpoint", _export_args)
def cmd_export(ns: argparse.Namespace) -> int:
    from ript_core.policy.io.checkpoint import (
        POLICY_FILE,
        CheckpointError,
        load_policy,
        save_policy,
    )
    from ript_core.policy.io.export import merged_policy
    from ript_core.policy.strategies import StrategyError

    try:
        # float32 on CPU: the merge W + (alpha/r)·B·A is done at full precision;
        # the saved config keeps the training dtype for later loads
        saved = Path(ns.checkpoint) / POLICY_FILE
        dtype = (
            json.loads(saved.read_text())["policy"].get("dtype", "float32")
            if saved.is_file()
            else "float32"
        )
        policy = load_policy(
            ns.checkpoint, device="cpu", dtype="float32", **checkpoint_load_options(ns)
        )
        strategy = policy.config.strategy
        merged = merged_policy(policy, dtype=dtype)
    except (CheckpointError, StrategyError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from exc
    out = save_policy(merged, ns.out)
    console.print(
        escape(
            f"wrote {out}: {strategy} checkpoint merged into a plain PI0 checkpoint "
            "(transformers' PI0ForConditionalGeneration.from_pretrained and ript's load_policy "
            "both load it)"
        ),
        highlight=False,
    )
    return 0
