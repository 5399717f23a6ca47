"""ManiSkill through the rollout runner (2 worker processes, the tiny PI0
policy) and a two-iteration RIPT run: mechanics, no success claim."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ript_core import get_registry
from tests.plugins.maniskill.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_maniskill

require_maniskill()

from ript_core.policy import PI0Policy  # noqa: E402
from ript_core.rl.actor import PI0Actor  # noqa: E402
from ript_core.rollout.runner import EpisodeRequest, RolloutRunner  # noqa: E402
from ript_core.rollout.workers import ProcessEnvPool, ResetCommand  # noqa: E402

MAX_STEPS, REPLAN = 8, 4


@pytest.fixture
def one_torch_thread():
    # the two env workers need the 2 cores more than the tiny policy does
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_rollout_with_two_workers_and_the_tiny_policy(maniskill_host, one_torch_thread):
    info = get_registry().task_info("maniskill", TASK)
    policy = PI0Policy.from_preset(
        "pi0-tiny", prompts=[info.instruction], seed=0, action_dim=7, state_dim=8, logp_horizon=4
    )
    requests = [
        EpisodeRequest(0, "maniskill", TASK, init_state=2, seed=11),
        EpisodeRequest(1, "maniskill", TASK, init_state=4, seed=12),
        EpisodeRequest(2, "maniskill", TASK, init_state=2, seed=11),  # = 0, other worker/history
    ]
    with ProcessEnvPool(2, timeout_s=300) as pool:
        runner = RolloutRunner(
            PI0Actor(policy, "sde"),
            pool,
            replan_every=REPLAN,
            max_steps=MAX_STEPS,
            env_options=ENV_OPTIONS,
        )
        rollouts, stats = runner.run(requests)
        pids = pool.call_all("pid")
    assert len(set(pids)) == 2

    assert stats.episodes == 3 and stats.discarded_episodes == 0 and stats.n_workers == 2
    assert stats.env_steps == 3 * MAX_STEPS
    for r in rollouts:
        assert (r.success, r.length) == (False, MAX_STEPS)  # 8 untrained steps cannot place a cube
        assert [s.n_executed for s in r.steps] == [REPLAN, REPLAN]
        for s in r.steps:
            assert s.policy_input.state.shape == (8,)
            assert s.policy_input.prompt == info.instruction
            assert {k: v.shape for k, v in s.policy_input.images.items()} == {
                "base_0_rgb": (IMAGE_SIZE, IMAGE_SIZE, 3),
                "left_wrist_0_rgb": (IMAGE_SIZE, IMAGE_SIZE, 3),
            }
            assert np.isfinite(s.record["log_prob"])

    # same context and seed, whichever worker ran it after what: the first
    # observation is the env's alone, bit-identical
    first, other, again = rollouts
    np.testing.assert_array_equal(
        first.steps[0].policy_input.state, again.steps[0].policy_input.state
    )
    for slot, img in first.steps[0].policy_input.images.items():
        np.testing.assert_array_equal(img, again.steps[0].policy_input.images[slot])
    assert not np.array_equal(first.steps[0].policy_input.state, other.steps[0].policy_input.state)
    # the second decision saw the arm moved by the first chunk
    moved = first.steps[1].policy_input.state[:3] - first.steps[0].policy_input.state[:3]
    assert np.abs(moved).max() > 1e-4

    # the workers' first policy input equals what this process computes itself
    reply = maniskill_host.handle(
        ResetCommand("maniskill", TASK, 2, 11, tuple(ENV_OPTIONS.items()))
    )
    obs_adapter, _ = get_registry().default_adapters("maniskill", TASK, ENV_OPTIONS)
    expected = obs_adapter(reply.obs)
    np.testing.assert_array_equal(first.steps[0].policy_input.state, expected.state)
    for slot, img in expected.images.items():
        np.testing.assert_array_equal(first.steps[0].policy_input.images[slot], img)


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
