"""The env a policy was trained in, kept with its checkpoint.

``ript eval`` of a run's checkpoint must evaluate what the run evaluated:
the same backend and tasks, the same env options (image size, cameras,
physics switches), step budget and replanning interval. The trainer stores
them as the policy's ``training_env`` (``training_env.json`` beside the
weights, :data:`ript_core.policy.io.checkpoint.TRAINING_ENV_FILE`), so every
checkpoint of the run -- and a ``ript export`` / ``ript convert`` of one --
carries them; ``ript eval`` uses them by default and warns where an option
on its command line differs.
"""

from __future__ import annotations

from typing import Any

import attrs

from ript_core.config import structure, unstructure
from ript_core.plugins import get_registry
from ript_core.rl.config import TrainConfig


@attrs.define
class TrainingEnv:
    backend: str
    tasks: list[str]  # resolved: an empty env.tasks ("every task") is listed here
    train_init_states: str
    eval_init_states: str
    # every env option the backend takes, its defaults filled in: a default that
    # changes in a later version of the backend does not change this evaluation
    options: dict[str, Any] = attrs.Factory(dict)
    replan_every: int = 5
    max_steps: int | None = None  # None: each task's own budget
    eval_mode: str = "ode"

    @classmethod
    def of_run(cls, cfg: TrainConfig, tasks: list[str]) -> TrainingEnv:
        env = cfg.env
        return cls(
            backend=env.backend,
            tasks=list(tasks),
            train_init_states=env.train_init_states,
            eval_init_states=env.eval_init_states,
            options=get_registry().check_options(env.backend, env.options),
            replan_every=env.replan_every,
            max_steps=env.max_steps,
            eval_mode=cfg.eval.mode,
        )

    def to_dict(self) -> dict[str, Any]:
        return unstructure(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> TrainingEnv:
        return structure(cls, data, source=source)
