"""ManiSkill through the rollout runner (2 worker processes, the tiny PI0
policy) and a two-iteration RIPT run: mechanics, no success claim."""

from __future__ import annotations

import json

import numpy as np

from tests.plugins.backend_contract import two_worker_rollout
from tests.plugins.maniskill.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_maniskill

require_maniskill()


def test_rollout_with_two_workers_and_the_tiny_policy(maniskill_host, one_torch_thread):
    # ManiSkill runs on torch itself: its workers hold torch, never a model
    two_worker_rollout(
        maniskill_host, "maniskill", TASK, ENV_OPTIONS, IMAGE_SIZE, torch_free_workers=False
    )


def test_two_iteration_ript_run_with_bc_on_expert_demos_completes(tmp_path, one_torch_thread):
    from ript_core.config import structure
    from ript_core.rl.config import TrainConfig
    from ript_core.rl.trainer import Trainer

    cfg = structure(
        TrainConfig,
        {
            "run_dir": str(tmp_path / "run"),
            "seed": 0,
            "policy": {
                "preset": "pi0-tiny",
                "logp_horizon": 4,
                "logp_action_dims": 7,
                "action_dim": 7,
                "state_dim": 8,
            },
            "env": {
                "backend": "maniskill",
                "tasks": ["PushCube"],
                "train_init_states": "0:4",
                "eval_init_states": "100:101",
                "options": {"image_size": IMAGE_SIZE, "hand_camera": False},
                "replan_every": 4,
                "max_steps": 8,
            },
            "rollout": {"n_workers": 0},
            "ript": {
                "iterations": 2,
                "group_size": 2,
                "groups_per_iteration": 1,
                "max_sampling_rounds": 1,
            },
            "update": {"ppo_epochs": 1, "micro_batch": 8},
            "bc": {"demos_per_task": 1, "demo_init_states": "0:4", "steps": 2, "batch_size": 4},
            "eval": {"episodes_per_init_state": 1},
            "checkpoint_every": 1,
            "tensorboard": False,
        },
    )
    with Trainer(cfg, progress=False) as trainer:
        summary = trainer.run()
        demos, chunk = trainer.demos, trainer.policy.chunk_size
    # BC learned from one successful expert episode of PushCube, recorded with images
    assert demos is not None and (demos.episodes, demos.successes) == (1, 1)
    assert demos.inputs[0].images["base_0_rgb"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert demos.chunks.shape == (len(demos), chunk, 7)
    # its first action is the expert's on init state 0, recomputed here on a
    # state-only env (the expert reads privileged state, not images)
    from ript_maniskill.env import ManiSkillEnv
    from ript_maniskill.expert import push_cube

    env = ManiSkillEnv("PushCube", render=False)
    env.reset(options={"init_state": 0})
    np.testing.assert_allclose(demos.chunks[0, 0], push_cube(env), rtol=0, atol=1e-5)
    env.close()
    assert summary["iterations"] == 2
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines, "the run logged no metrics"
    assert (tmp_path / "run" / "checkpoints").is_dir()
