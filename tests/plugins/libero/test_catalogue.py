"""The catalogue against LIBERO's own files: task counts, init-state counts,
budgets, settle steps; task-name and option errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.plugins.libero.conftest import require_libero

require_libero()

from libero.libero import get_libero_path  # noqa: E402

from ript_core import get_registry  # noqa: E402

EXPECTED = {  # suite: (tasks, policy steps) -- LIBERO paper / openpi's evaluation budgets
    "libero_spatial": (10, 220),
    "libero_object": (10, 280),
    "libero_goal": (10, 300),
    "libero_10": (10, 520),
    "libero_90": (90, 400),
}


@pytest.fixture(scope="module")
def catalogue():
    return get_registry().catalogue("libero")


def test_every_suite_has_its_task_count_budget_and_settle_steps(catalogue):
    by_suite: dict[str, list] = {}
    for t in catalogue:
        by_suite.setdefault(t.suite, []).append(t)
    assert {s: len(ts) for s, ts in by_suite.items()} == {s: n for s, (n, _) in EXPECTED.items()}
    assert len({t.name for t in catalogue}) == 130
    for suite, tasks in by_suite.items():
        assert {t.max_steps for t in tasks} == {EXPECTED[suite][1]}
        assert all(t.name.startswith(suite + ".") for t in tasks)
    assert {t.settle_steps for t in catalogue} == {10}
    assert {t.noop_action for t in catalogue} == {(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)}


def test_init_state_counts_match_the_official_init_files(catalogue):
    # read the files LIBERO ships directly, without LIBERO's loader
    root = Path(get_libero_path("init_states"))
    for t in catalogue:
        suite, libero_name = t.name.split(".", 1)
        files = list((root / suite).glob(f"{libero_name}.pruned_init*"))
        assert len(files) == 1, files
        path = files[0]
        if path.suffix == ".npz":
            with np.load(path) as f:
                n = f["states"].shape[0]
        else:  # the official package's torch-pickled states
            import torch

            n = len(torch.load(path, weights_only=False))
        assert t.n_init_states == n == 50, (t.name, n)


def test_instructions_are_the_file_name_language_openpi_prompts_with(catalogue):
    # openpi prompts with LIBERO's `task.language`: the bddl file name with the
    # scene prefix (libero_10/90) dropped and underscores as spaces -- not the
    # bddl's (:language ...) line, which differs for some tasks ("akita black bowl")
    for t in catalogue:
        libero_name = t.name.split(".", 1)[1]
        words = re.sub(r"^[A-Z_]+SCENE\d+_", "", libero_name).replace("_", " ")
        assert t.instruction == words, t.name


def test_bad_task_names_and_options_are_named_with_the_fix():
    from ript_libero.catalogue import locate
    from ript_libero.env import check_options

    with pytest.raises(ValueError, match=r"'<suite>\.<task>'"):
        locate("put_the_bowl_on_the_plate")
    with pytest.raises(KeyError, match="ript tasks libero"):
        locate("libero_goal.put_the_plate_on_the_moon")
    with pytest.raises(ValueError, match=r"unknown env options \['camera'\]"):
        check_options({"camera": "front"})
    with pytest.raises(ValueError, match="image_size must be an int"):
        check_options({"image_size": 6.5})
    with pytest.raises(ValueError, match=r"unknown env options \['camera'\]"):
        get_registry().default_adapters("libero", "libero_goal.turn_on_the_stove", {"camera": 1})
