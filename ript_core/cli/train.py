"""``ript train`` / ``ript demo`` / ``ript eval``."""

from __future__ import annotations

import argparse
import json
import logging
from importlib import resources
from pathlib import Path

from rich.markup import escape

from ript_core.cli.checkpoint_options import add_checkpoint_options, checkpoint_load_options
from ript_core.cli.console import console
from ript_core.cli.eval_settings import expand_tasks, resolve_eval_settings
from ript_core.cli.registry import command
from ript_core.config import load_config
from ript_core.configs import DEMO_CONFIG
from ript_core.envs.options import add_env_option_argument, parse_env_options
from ript_core.plugins import BUILTIN_BACKEND


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML training config (see ript_core/configs/)")
    p.add_argument(
        "overrides", nargs="*", help="section.key=value overrides, e.g. ript.group_size=8"
    )
    _run_flags(p)


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from run_dir's newest complete checkpoint (damaged newer ones are "
        "named and skipped)",
    )
    p.add_argument(
        "--allow-change",
        action="append",
        default=[],
        metavar="KEY",
        help="with --resume: continue although the config changed KEY (e.g. optim.lr, or a "
        "section: optim); repeatable. Without it a changed config is refused",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _train(config_path: Path, ns: argparse.Namespace) -> int:
    from ript_core.rl.config import TrainConfig

    # a config error is reported before torch is imported (seconds on a busy machine)
    cfg = load_config(TrainConfig, config_path, ns.overrides)
    cfg.check()
    from ript_core.rl.trainer import Trainer

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # our own few INFO lines (a resume, a first-use compile of a batch bucket)
    # matter to whoever watches a run; third-party INFO stays hidden
    logging.getLogger("ript_core").setLevel(logging.INFO)
    if ns.allow_change and not ns.resume:
        raise ValueError("--allow-change only means something with --resume: add --resume")
    allow = tuple(k for item in ns.allow_change for k in item.split(",") if k)
    with Trainer(cfg, resume=ns.resume, progress=not ns.quiet, allow_changes=allow) as trainer:
        summary = trainer.run()
    if trainer.dist.is_main:
        (Path(cfg.run_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    from ript_core.rl.distributed import exit_rank

    exit_rank(0)  # under torchrun: ends the process here (why: its docstring)
    return 0


@command("train", "post-train a policy with RIPT (torchrun-compatible)", _train_args)
def cmd_train(ns: argparse.Namespace) -> int:
    return _train(Path(ns.config), ns)


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the demo config")
    _run_flags(p)


@command(
    "demo",
    "the embedded default: BC warm start then RIPT on the toy backend with pi0-tiny (CPU, minutes)",
    _demo_args,
)
def cmd_demo(ns: argparse.Namespace) -> int:
    path = resources.files("ript_core.configs") / DEMO_CONFIG
    with resources.as_file(path) as config_path:
        console.print(f"config: {config_path}")
        return _train(config_path, ns)


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", help="a saved policy directory (e.g. runs/x/checkpoints/iter_000010/policy)"
    )
    add_checkpoint_options(p)
    trained = "default: the checkpoint's training run's"
    p.add_argument(
        "--backend",
        default=None,
        help=f"the tasks' backend ({trained}, else {BUILTIN_BACKEND}); another backend than the "
        "training run's leaves its tasks and env settings out",
    )
    p.add_argument(
        "--tasks",
        nargs="*",
        default=None,
        help=f"task names or patterns, e.g. 'libero_spatial.*' ({trained} env.tasks, else "
        "every task); --tasks alone: every task",
    )
    p.add_argument(
        "--init-states",
        default=None,
        help=f"e.g. 40: or 0:10 or 3,5,7 ({trained} held-out env.eval_init_states, else 0:)",
    )
    p.add_argument(
        "--episodes-per-init-state",
        type=int,
        default=1,
        help="episodes per (task, init state), each with its own noise seed (default 1)",
    )
    p.add_argument(
        "--mode",
        choices=("ode", "sde"),
        default=None,
        help="ode: deterministic Euler sampling; sde: the stochastic sampler RIPT trains "
        f"({trained} eval.mode, else ode)",
    )
    p.add_argument("--workers", type=int, default=1, help="env worker processes (0: in-process)")
    p.add_argument(
        "--replan-every",
        type=int,
        default=None,
        help=f"env steps executed per action chunk ({trained} env.replan_every, else 5)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help=f"episode budget ({trained} env.max_steps, else each task's own)",
    )
    add_env_option_argument(p)
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the episodes' noise and resets (default 0)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU intra-op threads (torch_threads in a config; 1 on a busy CPU); "
        "default: 1 with the policy on a GPU, else torch's default",
    )
    p.add_argument(
        "--videos", type=int, default=0, help="write this many MP4s (needs imageio[ffmpeg])"
    )
    p.add_argument("--out", default=None, help="directory for videos and results.json")


@command(
    "eval",
    "success rate of a policy checkpoint per task, with 95% confidence intervals",
    _eval_args,
)
def cmd_eval(ns: argparse.Namespace) -> int:
    import torch

    from ript_core.policy import load_policy
    from ript_core.policy.io.checkpoint import CheckpointError, read_training_env
    from ript_core.rl.evaluate import evaluate
    from ript_core.rl.host_threads import apply_rollout_threads
    from ript_core.rl.rollout_setup import rollout_setup, select_tasks
    from ript_core.rl.training_env import TrainingEnv

    if ns.threads is not None:
        if ns.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {ns.threads}")
        # as torch_threads does for training: oversubscribed CPU torch slows 10x+
        torch.set_num_threads(ns.threads)
    try:
        stored = read_training_env(ns.checkpoint)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from exc
    trained = None if stored is None else TrainingEnv.from_dict(stored, source=ns.checkpoint)
    settings = resolve_eval_settings(ns, trained, parse_env_options(ns.option))
    for note in settings.notes:
        console.print(escape(note), highlight=False)
    for warning in settings.warnings:
        console.print(escape(f"warning: {warning}"), style="yellow", highlight=False)
    tasks = expand_tasks(settings.tasks, select_tasks(settings.backend, []).tasks)
    # the range is checked against each task here: one past it is an error, not cut
    where = "--init-states" if ns.init_states else "the run's env.eval_init_states"
    contexts = select_tasks(settings.backend, tasks, setting="--tasks").contexts(
        settings.init_states, where
    )
    if ns.videos:
        try:
            import imageio.v3  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "--videos needs imageio with ffmpeg: pip install 'imageio[ffmpeg]'"
            ) from exc
    try:
        policy = load_policy(ns.checkpoint, **checkpoint_load_options(ns))
    except (CheckpointError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from exc
    # --threads unset: 1 for a policy off the CPU (ript_core/rl/host_threads.py)
    apply_rollout_threads(ns.threads, policy.device)
    with rollout_setup(
        policy,
        {"eval": settings.mode},
        env_workers=ns.workers,
        replan_every=settings.replan_every,
        record_frames=bool(ns.videos),
        max_steps=settings.max_steps,
        env_options=settings.env_options,
    ) as setup:
        result = evaluate(setup.runners["eval"], contexts, ns.episodes_per_init_state, ns.seed)
    console.print(result.table(), highlight=False)
    if ns.out:
        out = Path(ns.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(
            json.dumps({t.task: [t.successes, t.episodes] for t in result.tasks}, indent=2)
        )
        if ns.videos:
            import imageio.v3 as iio

            for r in result.rollouts[: ns.videos]:
                name = f"{r.request.task}_init{r.request.init_state}_{'ok' if r.success else 'fail'}.mp4"
                iio.imwrite(out / name, r.frames, fps=10)
    return 0


def _demos_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="<backend> or <backend>/<task>, e.g. maniskill/PickCube")
    p.add_argument("-n", "--episodes", type=int, required=True, help="expert episodes per task")
    p.add_argument(
        "--init-states", default="0:", help="the init states to draw the episodes from, in order"
    )
    p.add_argument("--noise", type=float, default=0.0, help="expert motion noise (if supported)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' noise and resets")
    add_env_option_argument(p)
    p.add_argument("-o", "--out", required=True, help="output .npz (read by bc.demos_file)")


@command(
    "record-demos",
    "record successful scripted-expert episodes to a demo file for the BC warm start "
    "(alias: demos)",
    _demos_args,
    aliases=("demos",),  # its first name, easy to confuse with `ript demo`
)
def cmd_demos(ns: argparse.Namespace) -> int:
    import time

    from ript_core.plugins import get_registry
    from ript_core.rl.config import parse_range
    from ript_core.rl.demos import record_demos, save_demos

    backend, _, task = ns.target.partition("/")
    reg = get_registry()
    reg.require_available(backend)
    catalogue = {t.name: t for t in reg.catalogue(backend)}
    tasks = [task] if task else sorted(catalogue)
    options = parse_env_options(ns.option)
    n = min(catalogue[t].n_init_states for t in tasks)
    init_states = parse_range(ns.init_states, n, "--init-states")[: ns.episodes]
    start = time.perf_counter()
    # chunk 2: the file stores per-step actions; the warm start cuts its own chunks
    demos = record_demos(
        backend, tasks, init_states, 2, ns.seed, noise=ns.noise, env_options=options
    )
    meta = {
        "backend": backend,
        "tasks": tasks,
        "init_states": init_states,
        "env_options": options,
        "noise": ns.noise,
        "seed": ns.seed,
    }
    path = save_demos(demos, ns.out, meta)
    console.print(
        f"{demos.successes}/{demos.episodes} expert episodes succeeded: {len(demos)} steps "
        f"-> {path} ({time.perf_counter() - start:.0f} s)"
    )
    return 0
