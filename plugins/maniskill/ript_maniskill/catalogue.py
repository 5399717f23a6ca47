"""The ManiSkill3 tasks this backend offers, before any env is built.

Only table-top Panda tasks whose scene is built from primitives (cubes,
spheres, target discs) are listed: they need no asset download (the robot
and table meshes ship inside the ``mani-skill`` wheel). Tasks with YCB
objects (PickSingleYCB, PickClutterYCB), the charger, faucet, peg or
assembling-kit meshes fetch their assets with ``python -m
mani_skill.utils.download_asset`` on first use, which fails offline, so they
are left out. Other primitive-only tasks (PokeCube, PlaceSphere,
LiftPegUpright, RollBall, PushT, StackPyramid, PullCubeTool) would run offline
too; they are not listed yet because no scripted expert or test covers them.
``tests/plugins/maniskill/test_catalogue.py`` builds every
listed task and checks that ManiSkill's asset directory did not change.
"""

from __future__ import annotations

import attrs

from ript_core import TaskInfo

# Init states are addressed by index; index i is ManiSkill's episode seed
# derived from (task, i) (see ``env.episode_seed``), so any index is valid.
# 1000 is the number of contexts the sampler draws from.
N_INIT_STATES = 1000


@attrs.frozen
class TaskSpec:
    env_id: str
    instruction: str
    # Our own step budget (ManiSkill registers 50 for all four). At 20 Hz
    # control, 50 steps is 2.5 s: enough for an RL-trained state policy, but a
    # learning VLA (and our scripted experts, which move at most 4 cm/step to
    # keep the IK controller tracking) need slack.
    max_steps: int


TASKS: dict[str, TaskSpec] = {
    "PickCube": TaskSpec("PickCube-v1", "pick up the red cube and move it to the green goal", 80),
    "PushCube": TaskSpec(
        "PushCube-v1", "push the blue cube forward onto the red and white target", 80
    ),
    "PullCube": TaskSpec(
        "PullCube-v1", "pull the blue cube back onto the red and white target", 80
    ),
    "StackCube": TaskSpec("StackCube-v1", "stack the red cube on top of the green cube", 120),
}


def locate(task: str) -> TaskSpec:
    try:
        return TASKS[task]
    except KeyError:
        raise KeyError(
            f"maniskill backend has no task {task!r}; known: {', '.join(TASKS)}"
        ) from None


def task_index(task: str) -> int:
    return list(TASKS).index(task)


def catalogue() -> list[TaskInfo]:
    return [
        TaskInfo(
            name=name,
            instruction=spec.instruction,
            n_init_states=N_INIT_STATES,
            max_steps=spec.max_steps,
            suite="maniskill-tabletop",
        )
        for name, spec in TASKS.items()
    ]
