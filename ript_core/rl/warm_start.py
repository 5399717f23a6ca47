"""The BC warm start before RIPT: where its demos come from, and when it stops.

The demos are either loaded (``bc.demos_file``, recorded once with ``ript
record-demos``) or recorded with the backend's scripted expert at the start of
the run (``bc.demos_per_task``). Either way none may come from the held-out
init states. ``bc.target_success`` stops cloning at the first check whose
ODE success on ``bc.check_init_states`` reaches the target: RIPT needs a
partial start, and where a fixed step count lands depends on the seed and the
processor's float kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ript_core.plugins import get_registry
from ript_core.rl.config import TrainConfig, parse_range
from ript_core.rl.contexts import Context
from ript_core.rl.demos import DemoSet, demo_file_meta, load_demos, record_demos
from ript_core.rl.evaluate import EvalResult
from ript_core.rl.rollout_setup import TaskSet


def _demo_init_states(cfg: TrainConfig, tasks: Sequence[str]) -> list[int]:
    n = get_registry().task_info(cfg.env.backend, tasks[0]).n_init_states
    return parse_range(cfg.bc.demo_init_states, n, "bc.demo_init_states")[: cfg.bc.demos_per_task]


def check_demo_source(
    cfg: TrainConfig, tasks: Sequence[str], eval_contexts: Sequence[Context]
) -> None:
    """Before a fresh run starts: the demos exist (or can be recorded), come
    from this backend, and none from a held-out init state."""
    bc, backend = cfg.bc, cfg.env.backend
    if not (bc.demos_per_task or bc.demos_file):
        return
    eval_ids = {c.init_state for c in eval_contexts}
    if bc.demos_file:
        if not Path(bc.demos_file).is_file():
            raise ValueError(
                f"bc.demos_file {bc.demos_file} does not exist (relative paths are from the "
                f"current directory); record it with `ript record-demos {backend}/<task> -n 64 "
                f"-o {bc.demos_file}`, or set bc.demos_per_task to record demos at the start"
            )
        meta = demo_file_meta(bc.demos_file)
        if meta.get("backend") != backend:
            raise ValueError(
                f"bc.demos_file {bc.demos_file} was recorded on backend {meta.get('backend')!r}, "
                f"this run trains on {backend!r}: record demos on {backend!r} with `ript "
                f"record-demos {backend}/<task>`"
            )
        leaked = sorted(set(meta.get("init_states", [])) & eval_ids)
        if leaked:
            raise ValueError(
                f"bc.demos_file {bc.demos_file} was recorded on init states that are held out "
                f"for evaluation ({leaked[:5]}…): move env.eval_init_states off them, or "
                "record the demos on training init states"
            )
    elif set(_demo_init_states(cfg, tasks)) & eval_ids:
        raise ValueError(
            "bc.demo_init_states overlap env.eval_init_states: the demos would leak into the "
            "evaluation; make them disjoint"
        )


def warm_start_demos(cfg: TrainConfig, tasks: Sequence[str], chunk_size: int) -> DemoSet:
    """The run's BC demos: ``bc.demos_file``, or recorded now with the backend's expert."""
    if cfg.bc.demos_file:
        return load_demos(cfg.bc.demos_file, chunk_size)[0]
    return record_demos(
        cfg.env.backend,
        list(tasks),
        _demo_init_states(cfg, tasks),
        chunk_size,
        seed=cfg.seed,
        noise=cfg.bc.demo_noise,
        env_options=cfg.env.options,
    )


@attrs.define
class BCTarget:
    """``bc.target_success``: asked by ``behaviour_clone`` every ``bc.check_every`` steps."""

    target: float
    contexts: list[Context]
    # the trainer's evaluation (each rank runs its share): (contexts, episodes, seed) -> result
    evaluate_on: Callable[[list[Context], int, int], EvalResult]
    seed: int
    log: Callable[[int, dict[str, Any]], None]
    say: Callable[[str], None]
    checks: list[list[float]] = attrs.field(factory=list)  # [step, success] per check

    @staticmethod
    def check_contexts(
        cfg: TrainConfig, task_set: TaskSet, eval_contexts: Sequence[Context]
    ) -> list[Context]:
        """The check states, validated before any work; empty without a target."""
        if cfg.bc.target_success <= 0:
            return []
        contexts = task_set.contexts(cfg.bc.check_init_states, "bc.check_init_states")
        if set(contexts) & set(eval_contexts):
            raise ValueError(
                "bc.check_init_states overlap env.eval_init_states: BC would be stopped on the "
                "states that measure it; take them from env.train_init_states (and not the "
                "demos' bc.demo_init_states)"
            )
        return contexts

    def reached(self, step: int) -> bool:
        """The BC policy's ODE success on the check states, one episode each."""
        result = self.evaluate_on(self.contexts, 1, self.seed)
        self.checks.append([step, result.rate])
        self.log(0, {"bc/step": step, "bc/check_success": result.rate})
        reached = result.rate >= self.target
        self.say(
            f"BC check at step {step}: success {result.successes}/{result.episodes} on "
            f"bc.check_init_states (target {self.target:.0%})"
            + (": reached, BC stops" if reached else "")
        )
        return reached

    def shortfall(self, max_steps: int) -> str | None:
        """A warning when BC used all its steps without reaching the target."""
        if not self.checks or self.checks[-1][1] >= self.target:
            return None
        best_step, best = max(self.checks, key=lambda c: c[1])
        return (
            f"warning: BC ran all its bc.steps={max_steps} without reaching "
            f"bc.target_success={self.target:.0%} (best check {best:.0%} at step "
            f"{best_step}); RIPT starts from there and may learn slowly. More demos "
            "(bc.demos_per_task, bc.demos_file) or more bc.steps usually help"
        )
