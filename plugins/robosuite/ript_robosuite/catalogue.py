"""The robosuite tasks this backend offers, before any env is built.

robosuite's tasks have no language: each gets a plain-English instruction
written from what its success check tests. Init states are addressed by
index: init state ``i`` is the seed of the scene robosuite draws at reset
(object placement, robot joint noise), derived from ``(task, i)``
(``ript_robosuite.env.scene_seed``), so any index below
:data:`N_INIT_STATES` is valid and reproducible.
"""

from __future__ import annotations

import attrs

from ript_core import TaskInfo

N_INIT_STATES = 1000
ACTION_DIM = 7
# objects are placed 1 cm above the table and drop onto it; a few no-op steps
# let them come to rest before the policy looks (gripper open: -1 in robosuite)
SETTLE_STEPS = 5
NOOP_ACTION: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SUITE = "robosuite-panda"


@attrs.frozen
class TaskSpec:
    env_name: str  # robosuite's environment name
    instruction: str
    # policy steps at 20 Hz: about twice what our scripted expert needs, and
    # well under robosuite's default horizon of 500
    max_steps: int


TASKS: dict[str, TaskSpec] = {
    "Lift": TaskSpec("Lift", "lift the red cube", 80),
    "Stack": TaskSpec("Stack", "stack the red cube on top of the green cube", 160),
    "PickPlaceCan": TaskSpec(
        "PickPlaceCan", "put the red can in the right bin's compartment marked with a can", 300
    ),
    "NutAssemblySquare": TaskSpec("NutAssemblySquare", "put the square nut on the square peg", 300),
    "Door": TaskSpec("Door", "turn the handle and open the door", 200),
}


def locate(task: str) -> TaskSpec:
    try:
        return TASKS[task]
    except KeyError:
        raise KeyError(
            f"robosuite backend has no task {task!r}; known: {', '.join(TASKS)}"
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
            suite=SUITE,
            settle_steps=SETTLE_STEPS,
            noop_action=NOOP_ACTION,
        )
        for name, spec in TASKS.items()
    ]
