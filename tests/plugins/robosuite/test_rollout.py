"""A short robosuite rollout through the rollout runner: 2 worker processes,
the tiny PI0 policy, small images, a few steps."""

from __future__ import annotations

import numpy as np
import torch

from tests.plugins.backend_contract import two_worker_rollout
from tests.plugins.robosuite.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_robosuite

require_robosuite()


def test_rollout_with_two_workers_and_the_tiny_policy(robosuite_host, one_torch_thread):
    first, _, again = two_worker_rollout(robosuite_host, "robosuite", TASK, ENV_OPTIONS, IMAGE_SIZE)
    # Later observations follow the policy's actions, which carry float noise
    # from the batch they were computed in; the tolerance is the LIBERO
    # backend's (the same MuJoCo/robosuite physics), measured there.
    for a, b in zip(first.steps, again.steps, strict=True):
        np.testing.assert_allclose(a.policy_input.state, b.policy_input.state, rtol=0, atol=4e-4)
        torch.testing.assert_close(a.record["chain"], b.record["chain"], rtol=0, atol=4e-4)
        assert abs(a.record["log_prob"] - b.record["log_prob"]) < 1e-2
