"""The backend conformance check: a conformant backend passes, and each rule
it checks catches a backend that breaks it, with a message that names it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from ript_core import (
    BackendCheckError,
    BackendSpec,
    ComposedActionAdapter,
    ComposedObservationAdapter,
    TaskInfo,
    check_backend,
    slice_action_dims,
)
from ript_core.cli import main


class Walk(gym.Env):
    """A 1-D walk whose defects are switched on by name."""

    def __init__(self, defects: frozenset[str]) -> None:
        self.defects = defects
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.calls = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        i = options["init_state"]
        if not 0 <= i < 4 and "any_init_state" not in self.defects:
            raise ValueError(f"init_state {i} out of range [0, 4)")
        self.calls += 1
        self.x = float(i) + (self.calls if "history" in self.defects else 0)
        info = {} if "no_success" in self.defects else {"success": False}
        if "info_counter" in self.defects:
            info["resets"] = self.calls
        return self.obs(), info

    def step(self, action):
        self.x += float(action[0]) + (np.random.random() if "global_rng" in self.defects else 0)
        return self.obs(), 0.0, False, False, {"success": False}

    def obs(self):
        image = np.full((4, 4, 3), int(self.x) % 256, np.uint8)
        if "float_image" in self.defects:
            image = image.astype(np.float32)
        return {"images": {"cam": image}, "state": np.array([self.x]), "instruction": "walk"}


class SkippingWalk(Walk):
    """Skips the image of an unread step (keeps the last one); with the
    "stale_state" defect it keeps the last state too, which breaks the rule."""

    skip = False
    last: dict | None = None

    def skip_next_observation(self):
        self.skip = True

    def obs(self):
        fresh = super().obs()
        if self.skip and self.last is not None:
            kept = {**fresh, "images": self.last["images"]}
            fresh = self.last if "stale_state" in self.defects else kept
        self.skip, self.last = False, fresh
        return fresh


def _fields(obs):
    return {"images": obs["images"], "state": obs["state"], "prompt": obs["instruction"]}


class WalkSpec(BackendSpec):
    name = "walk"
    env_options = {"speed": 1.0}

    def __init__(self, *defects: str) -> None:
        self.defects = frozenset(defects)

    def catalogue(self):
        # "operator": scenes set up by hand, which no reset reproduces exactly
        tasks = [TaskInfo("walk", "walk right", 4, 10, exact_reset="operator" not in self.defects)]
        return tasks * 2 if "twice" in self.defects else tasks

    def check_options(self, options):
        if "any_option" in self.defects:
            return dict(options)
        return super().check_options(options)

    def make_env(self, task, options):
        skips = self.defects & {"skips", "stale_state"}
        return SkippingWalk(self.defects) if skips else Walk(self.defects)

    def default_adapters(self, task, options):
        width = 2 if "wide_actions" in self.defects else 1
        return ComposedObservationAdapter([_fields]), ComposedActionAdapter(
            [slice_action_dims(width)]
        )

    def scripted_expert(self, task):
        if "bad_expert" in self.defects:
            return lambda env: np.zeros(1, np.float32)
        return lambda env, rng, noise: np.zeros(1, np.float32)


def test_a_conformant_backend_passes():
    assert check_backend(WalkSpec()) == []
    assert check_backend(WalkSpec("skips"), n_steps=7) == []  # skipping only unread images


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("history", "reset is not reproducible: the first observation of init_state=0"),
        ("global_rng", "fixed actions do not give the same trajectory: step 1"),
        ("no_success", "info['success'] must be a bool, got None"),
        (
            "info_counter",
            "the first observation of init_state=0, seed=0 after another history "
            "differs (info['resets'] 1 != 4)",
        ),
        ("float_image", "observation key 'images.cam' has dtype float32"),
        ("any_init_state", "reset accepted init_state=4"),
        ("any_option", "check_options accepted an unknown option"),
        ("twice", "task name 'walk' appears twice in the catalogue"),
        ("wide_actions", "chunk to shape (3, 2), not (3, 1)"),
        ("bad_expert", "must be callable as expert(env, rng, noise) -> action"),
        (
            "stale_state",
            "skip_next_observation changes more than unread images: step 1 (skipped) of "
            "init_state=0, seed=0 differs from the same step without skipping (state",
        ),
    ],
)
def test_each_broken_rule_is_reported(defect, message):
    problems = check_backend(WalkSpec(defect), raise_errors=False)
    assert any(message in p for p in problems), problems
    with pytest.raises(BackendCheckError, match="backend 'walk' breaks the contract"):
        check_backend(WalkSpec(defect))


def test_scenes_that_cannot_be_reset_exactly_are_not_compared():
    # an operator's scene differs each time; everything else is still checked
    assert check_backend(WalkSpec("operator", "history", "global_rng")) == []
    problems = check_backend(WalkSpec("operator", "any_init_state"), raise_errors=False)
    assert problems and all("init_state=4" in p for p in problems)


def test_unknown_task_and_bad_options_are_problems_not_crashes():
    assert check_backend(WalkSpec(), task="run", raise_errors=False) == [
        "task 'run' is not in the catalogue (walk)"
    ]
    (problem,) = check_backend(WalkSpec(), options={"sped": 2.0}, raise_errors=False)
    assert "unknown env options ['sped']" in problem


def test_the_command_checks_an_installed_backend(capsys):
    assert main(["check-backend", "toy", "--task", "reach-blue", "--option", "image_size=32"]) == 0
    assert "backend 'toy' keeps the contract" in capsys.readouterr().out
    assert main(["check-backend", "toy", "--option", "colour=red"]) == 1
    assert "unknown env options ['colour']" in capsys.readouterr().out
