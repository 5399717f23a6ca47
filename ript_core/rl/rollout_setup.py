"""A rollout set-up: the contexts to roll out, the env pool and a runner per
sampling mode around one policy. Built the same way for training
(:class:`ript_core.rl.trainer.Trainer`) and for ``ript eval``.

Two steps, because a trainer validates its tasks before it builds anything slow
(the policy, whose plan sizes the pool): :func:`select_tasks`, then
:func:`rollout_setup`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ript_core.envs.catalogue import TaskInfo
from ript_core.plugins import get_registry
from ript_core.rl.actor import PI0Actor
from ript_core.rl.config import parse_range
from ript_core.rl.contexts import Context
from ript_core.rollout.runner import RolloutRunner
from ript_core.rollout.workers import EnvPool, InProcessEnvPool, make_pool

if TYPE_CHECKING:
    from ript_core.rl.config import TrainConfig

log = logging.getLogger(__name__)


@attrs.frozen
class TaskSet:
    """The tasks of one backend that a run rolls out, with their catalogue entries."""

    backend: str
    tasks: list[str]
    catalogue: dict[str, TaskInfo]

    def contexts(self, init_states: str, setting: str = "init-state range") -> list[Context]:
        """Every (task, init state) of ``init_states`` (``"0:40"``, ``"40:"``, ``"3,5"``);
        ``setting`` names the option in the error of a range a task does not have."""
        return [
            Context(self.backend, t, i)
            for t in self.tasks
            for i in parse_range(
                init_states, self.catalogue[t].n_init_states, f"{setting} (task {t})"
            )
        ]


def select_tasks(backend: str, tasks: Sequence[str], setting: str = "env.tasks") -> TaskSet:
    """``tasks`` of an installed ``backend`` (none: all of them), checked against
    its catalogue; ``setting`` names the option in the error."""
    reg = get_registry()
    reg.require_available(backend)
    catalogue = {t.name: t for t in reg.catalogue(backend)}
    chosen = list(tasks) or sorted(catalogue)
    unknown = [t for t in chosen if t not in catalogue]
    if unknown:
        names = sorted(catalogue)
        listed = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        raise ValueError(
            f"{setting}: {backend!r} has no task(s) {unknown}; its tasks: {listed} "
            f"(`ript tasks {backend}` lists them)"
        )
    return TaskSet(backend, chosen, catalogue)


@attrs.define
class RolloutSetup:
    """One env pool and the runners that share it, by role ("train", "eval")."""

    pool: EnvPool
    runners: dict[str, RolloutRunner]

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> RolloutSetup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rollout_setup(
    policy: Any,
    modes: Mapping[str, str],
    *,
    env_workers: int,
    in_process_envs: int = 1,
    worker_timeout_s: float = 120.0,
    **runner_options: Any,
) -> RolloutSetup:
    """The pool (``env_workers`` processes; 0: ``in_process_envs`` envs in this
    process) and, per role of ``modes`` (role -> sampling mode, "sde" or "ode"),
    a :class:`RolloutRunner` of its own on that pool. ``runner_options`` go to
    every runner (``replan_every``, ``max_steps``, ``env_options``,
    ``pipeline_groups``, ``record_frames``)."""
    if env_workers == 0:
        pool: EnvPool = InProcessEnvPool(in_process_envs)
    else:
        pool = make_pool(env_workers, worker_timeout_s)
    runners = {
        role: RolloutRunner(PI0Actor(policy, mode), pool, **runner_options)
        for role, mode in modes.items()
    }
    return RolloutSetup(pool, runners)


def within_backend_limits(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its rollout section fitted to what the backend declares
    (``BackendSpec.operator_prompts``: one env in this process, where the
    operator's terminal is; ``max_env_workers``: at most that many envs), so
    that the trainer needs no backend special case. Logs what it changed."""
    spec = get_registry().spec(cfg.env.backend)
    rollout = cfg.rollout
    if spec.operator_prompts and (rollout.n_workers != 0 or rollout.in_process_envs != 1):
        rollout = attrs.evolve(rollout, n_workers=0, in_process_envs=1)
        reason = "its envs prompt an operator on this terminal"
    elif spec.max_env_workers is not None and (
        rollout.n_workers is None or rollout.n_workers > spec.max_env_workers
    ):
        rollout = attrs.evolve(rollout, n_workers=spec.max_env_workers)
        reason = f"it runs at most {spec.max_env_workers} env(s) at once"
    else:
        return cfg
    log.info(
        "backend %r: rollout.n_workers=%s, in_process_envs=%d (%s)",
        spec.name, rollout.n_workers, rollout.in_process_envs, reason,
    )  # fmt: skip
    return attrs.evolve(cfg, rollout=rollout)


def journaled(runner: RolloutRunner, backend: str, run_dir: str | Path) -> Any:
    """``runner`` itself, or, for a backend that declares
    ``journal_episodes``, the runner with its episodes journaled under
    ``<run_dir>/episodes`` (:mod:`ript_core.rollout.journal`)."""
    if not get_registry().spec(backend).journal_episodes:
        return runner
    from ript_core.rollout.journal import EpisodeJournal, JournaledRunner

    return JournaledRunner(runner, EpisodeJournal(Path(run_dir) / "episodes"))
