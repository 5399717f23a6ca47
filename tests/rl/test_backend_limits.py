"""The trainer's rollout layout follows what a backend spec declares (one
env, operator prompts), so no backend needs a special case in the trainer."""

import pytest

from ript_core import get_registry
from ript_core.rl.rollout_setup import within_backend_limits
from tests.rl.conftest import tiny_config


@pytest.fixture
def toy_spec(monkeypatch):
    spec = get_registry().spec("toy")
    yield lambda **declared: [monkeypatch.setattr(spec, k, v) for k, v in declared.items()]


@pytest.mark.parametrize(
    ("declared", "rollout", "expected"),
    [
        ({}, {"n_workers": 4}, (4, 1)),  # nothing declared: the config stands
        ({"max_env_workers": 2}, {"n_workers": 4}, (2, 1)),
        ({"max_env_workers": 2}, {"n_workers": None}, (2, 1)),  # the planner may not exceed it
        ({"max_env_workers": 2}, {"n_workers": 1}, (1, 1)),
        ({"operator_prompts": True}, {"n_workers": 3}, (0, 1)),  # this process: the terminal
        ({"operator_prompts": True}, {"n_workers": 0, "in_process_envs": 8}, (0, 1)),
    ],
)
def test_rollout_section_fitted_to_the_spec(toy_spec, tmp_path, declared, rollout, expected):
    toy_spec(**declared)
    cfg = within_backend_limits(tiny_config(tmp_path, rollout=rollout))
    assert (cfg.rollout.n_workers, cfg.rollout.in_process_envs) == expected
