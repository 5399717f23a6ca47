"""``ript record`` and ``ript diff``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ript_core.cli.checkpoint_options import add_checkpoint_options, checkpoint_load_options
from ript_core.cli.console import console
from ript_core.cli.registry import command


def policy_input_from_file(obs: Mapping[str, Any], path: str) -> Any:
    from ript_core.envs.interfaces import PolicyInput

    missing = {"images", "state", "prompt"} - set(obs)
    if missing or not isinstance(obs.get("images"), Mapping):
        raise ValueError(
            f"{path}: without --env the file must hold an adapted observation with keys "
            f"'images/<slot>', 'state' and 'prompt' (missing {sorted(missing)}); for a raw env "
            "observation pass --env BACKEND/TASK so its observation adapter translates it"
        )
    return PolicyInput(
        images=dict(obs["images"]), state=np.asarray(obs["state"]), prompt=str(obs["prompt"])
    )


# ---- ript record ------------------------------------------------------------------------


def _action_dim(env: Any) -> int | None:
    shape = getattr(env.action_space, "shape", None)
    return int(shape[0]) if shape else None


def _record_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="directory to write (stages.safetensors + meta.json)")
    src = p.add_argument_group("observation (one of)")
    src.add_argument(
        "--env",
        help="BACKEND/TASK: reset this env and record its first observation "
        "(with --obs: only its adapters are used)",
    )
    src.add_argument(
        "--obs",
        help=".npz observation file: a raw env observation (with --env) or an adapted one "
        "(images/<slot>, state, prompt)",
    )
    p.add_argument("--init-state", type=int, default=0, help="env init state (with --env)")
    p.add_argument("--env-seed", type=int, default=0, help="env reset seed (with --env)")
    p.add_argument("--save-obs", help="also write the raw observation used to this .npz")
    pol = p.add_argument_group("policy (one of)")
    pol.add_argument("--checkpoint", help="a saved policy directory (any layout load_policy reads)")
    pol.add_argument("--preset", help="random-init preset instead of a checkpoint, e.g. pi0-tiny")
    add_checkpoint_options(p, preset=False)  # --preset here is a random-init policy
    p.add_argument(
        "--allow-tf32",
        action="store_true",
        help="record a float32 policy even with TF32 matmuls on (not a parity run then)",
    )
    p.add_argument("--policy-seed", type=int, default=0, help="weights seed for --preset")
    p.add_argument(
        "--action-dim",
        type=int,
        default=None,
        help="real action dims for --preset (default: the env's action space)",
    )
    p.add_argument("--seed", type=int, default=0, help="noise seed (x_1 drawn on the CPU)")
    p.add_argument("--noise", help=".npy float32 [1, chunk, action_dim] initial noise to use")
    p.add_argument(
        "--mode", choices=("ode", "sde"), default="ode", help="sampler to record (default ode)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, auto (default: the policy's)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default=None,
        help="model dtype (default: the checkpoint's)",
    )
    p.add_argument(
        "--no-layers", action="store_true", help="skip per-layer hidden states (smaller files)"
    )


@command("record", "record every stage of one observation's trip through the policy", _record_args)
def cmd_record(ns: argparse.Namespace) -> int:
    import torch

    from ript_core.debug.observation_files import load_observation, save_observation
    from ript_core.debug.recorder import record_inference
    from ript_core.plugins import get_registry, split_env_id

    if (ns.checkpoint is None) == (ns.preset is None):
        raise ValueError("give exactly one of --checkpoint DIR or --preset NAME")
    for flag, value in (("--openpi-config", ns.openpi_config), ("--tokenizer", ns.tokenizer)):
        if value is not None and ns.checkpoint is None:
            raise ValueError(f"{flag} is about a checkpoint's loading: it needs --checkpoint")
    if ns.env is None and ns.obs is None:
        raise ValueError("give --env BACKEND/TASK (live env) or --obs FILE (saved observation)")
    if ns.save_obs and ns.env is None:
        raise ValueError("--save-obs writes the raw env observation: it needs --env")
    noise = None
    if ns.noise is not None:
        if not Path(ns.noise).is_file():
            raise ValueError(f"noise file {ns.noise} does not exist")
        noise = torch.from_numpy(np.load(ns.noise))
        if noise.dtype != torch.float32:  # checked before the (slow) policy load
            raise ValueError(
                f"noise file {ns.noise} holds {noise.dtype}; PI0's initial noise must be "
                "float32 (save it with .astype(np.float32))"
            )

    obs_adapter = action_adapter = None
    meta: dict[str, Any] = {}
    action_dim = ns.action_dim
    if ns.env is not None:
        backend, task = split_env_id(ns.env)
        reg = get_registry()
        reg.require_available(backend)
        reg.task_info(backend, task)
        obs_adapter, action_adapter = reg.default_adapters(backend, task)
        meta["env"] = ns.env
        if ns.obs is not None and ns.preset is not None and action_dim is None:
            # a random preset's action dims follow the env, with or without a live episode
            env = reg.make_env(backend, task)
            action_dim = _action_dim(env)
            env.close()
    if ns.obs is not None:
        if not Path(ns.obs).is_file():
            raise ValueError(f"observation file {ns.obs} does not exist")
        observation: Any = load_observation(ns.obs)
        meta["obs_file"] = str(ns.obs)
        if ns.env is None:
            observation = policy_input_from_file(observation, ns.obs)
    else:
        info = reg.task_info(backend, task)
        env = reg.make_settled_env(backend, task)  # settled as the rollout runner's envs are
        try:
            observation, _ = env.reset(seed=ns.env_seed, options={"init_state": ns.init_state})
            if action_dim is None:
                action_dim = _action_dim(env)
        finally:
            env.close()
        meta.update(init_state=ns.init_state, env_seed=ns.env_seed, settle_steps=info.settle_steps)
        if ns.save_obs:
            save_observation(observation, ns.save_obs)
            console.print(f"observation: {ns.save_obs}")

    overrides: dict[str, Any] = {
        k: v for k, v in (("device", ns.device), ("dtype", ns.dtype)) if v is not None
    }
    overrides["compile"] = False  # hooks need the eager modules
    if ns.checkpoint is not None:
        from ript_core.policy import load_policy

        policy = load_policy(ns.checkpoint, **checkpoint_load_options(ns), **overrides)
        meta["checkpoint"] = str(ns.checkpoint)
    else:
        from ript_core.envs.interfaces import PolicyInput
        from ript_core.policy import PI0Policy

        adapted = observation if isinstance(observation, PolicyInput) else obs_adapter(observation)
        policy = PI0Policy.from_preset(
            ns.preset,
            prompts=[adapted.prompt],
            seed=ns.policy_seed,
            state_dim=int(np.asarray(adapted.state).shape[-1]),
            action_dim=action_dim,
            **overrides,
        )
        meta["policy_seed"] = ns.policy_seed
    rec = record_inference(
        policy,
        observation,
        obs_adapter=obs_adapter,
        action_adapter=action_adapter,
        noise=noise,
        seed=ns.seed,
        mode=ns.mode,
        layers=not ns.no_layers,
        meta=meta,
        allow_tf32=ns.allow_tf32,
    )
    out = rec.save(ns.out)
    console.print(f"recorded {len(rec)} stages to {out}")
    return 0


# ---- ript diff ----------------------------------------------------------------------------


def _diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="recording A (the reference: its stage order is used)")
    p.add_argument("b", help="recording B")
    p.add_argument("--map", dest="mapping", help="YAML stage mapping from A's names to B's")
    p.add_argument(
        "--atol", type=float, default=1e-5, help="absolute tolerance per element (default 1e-5)"
    )
    p.add_argument(
        "--rtol", type=float, default=1e-4, help="relative tolerance per element (default 1e-4)"
    )
    p.add_argument("--stages", nargs="*", help="only stages of A matching these globs")
    p.add_argument("--brief", action="store_true", help="list only failing and missing stages")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


@command(
    "diff",
    "compare two recordings stage by stage; exit 1 at the first stage beyond tolerance",
    _diff_args,
)
def cmd_diff(ns: argparse.Namespace) -> int:
    from ript_core.debug.diff import diff_recordings
    from ript_core.debug.mapping import StageMapping
    from ript_core.debug.recording import Recording

    try:
        a, b = Recording.load(ns.a), Recording.load(ns.b)
        mapping = StageMapping.load(ns.mapping) if ns.mapping else None
    except FileNotFoundError as exc:  # the CLI reports ValueErrors without a traceback
        raise ValueError(str(exc)) from exc
    report = diff_recordings(a, b, mapping, atol=ns.atol, rtol=ns.rtol, stages=ns.stages)
    if not report.compared:
        raise ValueError(
            f"no stage of {ns.a} has a counterpart in {ns.b}: the names differ; "
            "write a mapping file and pass --map (see docs/debugging.md)"
        )

    for key in ("versions", "dtype", "device", "seed", "mode", "prompt", "preset"):
        va, vb = a.meta.get(key), b.meta.get(key)
        if va is not None or vb is not None:
            flag = "" if va == vb else "  [yellow](differs)[/yellow]"
            console.print(f"{key}: A={va!r} B={vb!r}{flag}", highlight=False)

    table = Table(title=f"ript diff (atol {ns.atol:g}, rtol {ns.rtol:g})")
    for col in ("stage", "B stage", "shape", "max abs", "max rel", "status"):
        table.add_column(col)
    first = report.first_divergence
    for row in report.rows:
        if ns.brief and row.status in ("ok", "ignored"):
            continue
        style = {"DIVERGED": "red", "shape": "red", "missing": "yellow", "ignored": "dim"}.get(
            row.status, ""
        )
        status = row.status + (" <- first" if row is first else "")
        if row.note:
            status += f" ({row.note})"
        shape = (
            str(row.shape)
            if row.shape == row.other_shape or row.other_shape is None
            else (f"{row.shape} vs {row.other_shape}")
        )
        table.add_row(
            row.name,
            "" if row.other_name == row.name else row.other_name,
            shape,
            _fmt(row.max_abs),
            _fmt(row.max_rel),
            status,
            style=style,
        )
    # wide enough for per-layer stage names whatever the terminal says
    Console(width=max(console.width, 150)).print(table)
    n_missing = sum(r.status == "missing" for r in report.rows)
    console.print(
        f"{len(report.compared)} stages compared, {n_missing} missing in B, "
        f"{sum(r.failed for r in report.rows)} beyond tolerance"
    )
    if first is not None:
        console.print(
            f"[red]first divergence: {first.name}[/red] "
            f"(max abs {_fmt(first.max_abs)}, max rel {_fmt(first.max_rel)})",
            highlight=False,
        )
        return 1
    console.print("[green]no divergence[/green]")
    return 0
