"""A short LIBERO rollout through the rollout runner: 2 worker processes,
the tiny PI0 policy, small images, a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ript_core import get_registry
from tests.plugins.libero.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_libero

require_libero()

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


def test_rollout_with_two_workers_and_the_tiny_policy(libero_host, one_torch_thread):
    info = get_registry().task_info("libero", TASK)
    policy = PI0Policy.from_preset(
        "pi0-tiny", prompts=[info.instruction], seed=0, action_dim=7, state_dim=8, logp_horizon=4
    )
    requests = [
        EpisodeRequest(0, "libero", TASK, init_state=2, seed=11),
        EpisodeRequest(1, "libero", TASK, init_state=4, seed=12),
        EpisodeRequest(
            2, "libero", TASK, init_state=2, seed=11
        ),  # = episode 0, other worker/history
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
        assert pool.call_all("torch_loaded") == [False, False]  # no model in the env workers

    assert stats.episodes == 3 and stats.discarded_episodes == 0 and stats.n_workers == 2
    assert stats.env_steps == 3 * MAX_STEPS
    assert max(stats.mean_batch, 1.0) <= 2.0
    for r in rollouts:
        assert (r.success, r.length) == (False, MAX_STEPS)  # 8 random-policy steps cannot succeed
        assert [s.n_executed for s in r.steps] == [REPLAN, REPLAN]
        for s in r.steps:
            assert s.policy_input.state.shape == (8,)
            assert s.policy_input.prompt == info.instruction
            assert {k: v.shape for k, v in s.policy_input.images.items()} == {
                "base_0_rgb": (IMAGE_SIZE, IMAGE_SIZE, 3),
                "left_wrist_0_rgb": (IMAGE_SIZE, IMAGE_SIZE, 3),
            }
            assert np.isfinite(s.record["log_prob"])

    # The same context and seed gives the same episode, whichever worker ran it
    # after what. The first observation is the env's alone: bit-identical. Later
    # ones follow the policy's actions, which carry float noise from the batch
    # they were computed in (episode 0 shared its batch, episode 2 did not) and
    # from the processor's kernels. Measured max |chain difference|: 2.4e-7 on
    # an AVX-512 AMD EPYC under four kernel settings (ATEN_CPU_CAPABILITY,
    # MKL_CBWR), 3.7e-5 on an Intel Xeon; the tolerance is 10x the largest.
    # A backend that does not reproduce its episodes differs by far more.
    first, other, again = rollouts
    np.testing.assert_array_equal(
        first.steps[0].policy_input.state, again.steps[0].policy_input.state
    )
    for slot, img in first.steps[0].policy_input.images.items():
        np.testing.assert_array_equal(img, again.steps[0].policy_input.images[slot])
    for a, b in zip(first.steps, again.steps, strict=True):
        np.testing.assert_allclose(a.policy_input.state, b.policy_input.state, rtol=0, atol=4e-4)
        torch.testing.assert_close(a.record["chain"], b.record["chain"], rtol=0, atol=4e-4)
        assert abs(a.record["log_prob"] - b.record["log_prob"]) < 1e-2
    # the second decision saw the arm moved by the first chunk
    assert (
        np.abs(first.steps[1].policy_input.state[:3] - first.steps[0].policy_input.state[:3]).max()
        > 1e-4
    )
    assert not np.array_equal(first.steps[0].policy_input.state, other.steps[0].policy_input.state)

    # The first policy input equals what this process computes itself through a
    # worker's EnvHost: reset, the catalogue's 10 no-op settle steps, adapter.
    env_before = libero_host.env
    reply = libero_host.handle(
        ResetCommand(
            "libero", TASK, 2, 11, tuple(ENV_OPTIONS.items()), info.settle_steps, info.noop_action
        )
    )
    assert libero_host.env is env_before  # same task and options: the env is reused, not rebuilt
    obs_adapter, _ = get_registry().default_adapters("libero", TASK, ENV_OPTIONS)
    expected = obs_adapter(reply.obs)
    np.testing.assert_array_equal(first.steps[0].policy_input.state, expected.state)
    for slot, img in expected.images.items():
        np.testing.assert_array_equal(first.steps[0].policy_input.images[slot], img)
