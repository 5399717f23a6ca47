from pathlib import Path

import pytest

from ript_core.config import dump_config, structure
from ript_core.rl.config import TrainConfig


def tiny_config(run_dir: Path, **sections) -> TrainConfig:
    """A RIPT run small enough for a test: 2 tasks, tiny policy, short episodes."""
    data = {
        "run_dir": str(run_dir),
        "seed": 3,
        "policy": {
            "preset": "pi0-tiny",
            "logp_horizon": 5,
            "logp_action_dims": 3,
            "action_dim": 3,
            "state_dim": 3,
        },
        "env": {
            "backend": "toy",
            "tasks": ["reach-red", "reach-blue"],
            "train_init_states": "0:10",
            "eval_init_states": "40:44",
            "replan_every": 5,
            "max_steps": 15,
        },
        "rollout": {"n_workers": 0},
        "ript": {
            "iterations": 3,
            "group_size": 2,
            "groups_per_iteration": 2,
            "max_sampling_rounds": 2,
        },
        "update": {"ppo_epochs": 1, "micro_batch": 16},
        "optim": {"lr": 1e-3},
        "bc": {"demos_per_task": 2, "demo_init_states": "0:10", "steps": 5, "batch_size": 8},
        "eval": {"episodes_per_init_state": 1},
        "checkpoint_every": 1,
        "tensorboard": False,
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    return structure(TrainConfig, data)


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(run_dir=None, **kw):
        return tiny_config(run_dir or tmp_path / "run", **kw)

    return make


@pytest.fixture
def write_cfg(tmp_path):
    def write(cfg: TrainConfig, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        dump_config(cfg, path)
        return path

    return write
