"""Deterministic tiny policy and decisions shared by tests and the torchrun
workers, and the launcher the tests start those workers with."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ript_core import make_env
from ript_core.envs.toy.adapters import make_adapters
from ript_core.policy import PI0Policy
from ript_core.rl.actor import PI0Actor
from ript_core.rl.ript import Decision


def tiny_policy(seed: int = 0) -> PI0Policy:
    return PI0Policy.from_preset(
        "pi0-tiny",
        prompts=["pick up the red block"],
        seed=seed,
        logp_horizon=5,
        logp_action_dims=3,
        action_dim=3,
        state_dim=3,
    )


def fixed_decisions(policy: PI0Policy, n: int = 8) -> list[Decision]:
    env = make_env("toy/reach-red")
    obs_adapter, _ = make_adapters()
    inputs = [obs_adapter(env.reset(options={"init_state": i})[0]) for i in range(n)]
    out = PI0Actor(policy, "sde").act(inputs, seeds=list(range(100, 100 + n)))
    adv = np.linspace(-1, 1, n)
    return [Decision(x, r, float(a)) for x, r, a in zip(inputs, out.records, adv, strict=True)]


def run_worker(repo_root: Path, script: str, *args: object, ranks: int | None = None) -> None:
    """Run a test worker script from the repository root: as one plain process,
    or under ``torchrun --standalone`` with ``ranks`` gloo processes (a free
    port each time, so concurrent runs never collide)."""
    env = dict(os.environ, PYTHONPATH=str(repo_root), OMP_NUM_THREADS="1")
    launcher = [sys.executable]
    if ranks is not None:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    subprocess.run(
        [*launcher, script, *map(str, args)], check=True, env=env, cwd=repo_root, timeout=300
    )


def worker_output(description: str | None) -> Path:
    """The output path given to a worker script. Parsed by argparse, so that a
    stray flag is an error and never a path: pytest once imported a worker named
    on its command line, and the worker took ``sys.argv[1]`` (pytest's ``-q``)
    as its output directory. The workers also run only as ``__main__``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path, help="where the worker writes its results")
    out = parser.parse_args().out
    if str(out).startswith("-"):
        parser.error(f"output path {str(out)!r} starts with '-': a flag, not a path")
    return out
