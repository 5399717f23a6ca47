import numpy as np
import torch

from ript_core import make_env
from ript_core.envs.toy.adapters import make_adapters
from ript_core.rl.actor import PI0Actor
from tests.rl.fixtures import fixed_decisions, tiny_policy


def toy_inputs(n):
    env = make_env("toy/reach-green")
    obs_adapter, _ = make_adapters()
    return [obs_adapter(env.reset(options={"init_state": i})[0]) for i in range(n)]


def test_a_samples_chunk_does_not_depend_on_its_batch_mates():
    actor = PI0Actor(tiny_policy(), "sde")
    inputs = toy_inputs(5)
    together = actor.act(inputs, seeds=[11, 12, 13, 14, 15])
    alone = actor.act(inputs[2:3], seeds=[13])
    np.testing.assert_allclose(together.actions[2], alone.actions[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        together.records[2]["chain"], alone.records[0]["chain"], atol=1e-5, rtol=0
    )
    again = actor.act(inputs, seeds=[11, 12, 13, 14, 15])
    np.testing.assert_array_equal(again.actions, together.actions)
    other_seed = actor.act(inputs[2:3], seeds=[99])
    assert np.abs(other_seed.actions[0] - alone.actions[0]).max() > 1e-3


def test_rescored_log_prob_equals_the_recorded_one_and_is_differentiable():
    policy = tiny_policy()
    decisions = fixed_decisions(policy, n=4)
    actor = PI0Actor(policy)
    logp = actor.log_prob([d.policy_input for d in decisions], [d.record for d in decisions])
    recorded = torch.tensor([d.record["log_prob"] for d in decisions])
    torch.testing.assert_close(logp.detach(), recorded, atol=1e-5, rtol=0)
    logp.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
