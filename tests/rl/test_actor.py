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


def test_acting_builds_no_autograd_graph(monkeypatch):
    """Rollouts run preprocessing, sampling and postprocessing without
    gradients (no graph kept alive per decision)."""
    policy = tiny_policy()
    seen = []
    for name in ("preprocess", "postprocess"):
        original = getattr(policy, name)

        def spy(*args, _original=original, **kwargs):
            seen.append(torch.is_grad_enabled())
            return _original(*args, **kwargs)

        monkeypatch.setattr(policy, name, spy)
    PI0Actor(policy, "sde").act(toy_inputs(2), seeds=[1, 2])
    assert seen == [False, False]


def test_rescored_log_prob_equals_the_recorded_one_and_is_differentiable():
    policy = tiny_policy()
    decisions = fixed_decisions(policy, n=4)
    actor = PI0Actor(policy)
    logp = actor.log_prob([d.policy_input for d in decisions], [d.record for d in decisions])
    recorded = torch.tensor([d.record["log_prob"] for d in decisions])
    torch.testing.assert_close(logp.detach(), recorded, atol=1e-5, rtol=0)
    logp.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


def test_old_log_prob_is_the_update_arithmetic_without_a_graph(monkeypatch):
    """``old_log_prob``: the same numbers as ``log_prob`` (float32 here), no
    graph, and the kernel choice of a gradient pass (attention.update_kernels)."""
    import ript_core.policy.attention as attention

    policy = tiny_policy()
    decisions = fixed_decisions(policy, n=4)
    actor = PI0Actor(policy)
    inputs, records = [d.policy_input for d in decisions], [d.record for d in decisions]
    seen = []
    monkeypatch.setattr(
        attention, "attention_backends", lambda device, training=False: _record(seen, training)
    )
    with_grad = actor.log_prob(inputs, records)
    old = actor.old_log_prob(inputs, records)
    assert not old.requires_grad
    torch.testing.assert_close(old, with_grad.detach(), atol=0, rtol=0)
    monkeypatch.setattr(attention, "CUDNN_MIN_TRAINING_BATCH", 4)
    actor.old_log_prob(inputs, records)
    with torch.no_grad():
        actor.log_prob(inputs, records)  # a plain no-grad call: sampling's kernels
    assert seen[-2:] == [True, False]


def _record(seen, training):
    import contextlib

    seen.append(training)
    return contextlib.nullcontext()


def test_the_trainer_recomputes_old_log_probs_unless_the_policy_is_float32():
    from types import SimpleNamespace

    from ript_core.rl.config import UpdateConfig
    from ript_core.rl.trainer import Trainer

    def resolved(mode, dtype):
        me = SimpleNamespace(
            cfg=SimpleNamespace(update=UpdateConfig(old_log_prob=mode)),
            policy=SimpleNamespace(dtype=dtype),
        )
        return Trainer.recompute_old_log_prob.fget(me)

    assert resolved("auto", torch.float32) is False
    assert resolved("auto", torch.bfloat16) is True
    assert resolved("recompute", torch.float32) is True
    assert resolved("rollout", torch.bfloat16) is False


def test_submit_then_result_is_act():
    """The runner's asynchronous half-calls give ``act``'s output; off CUDA
    the call has run by the time ``submit`` returns and reports no device time."""
    actor = PI0Actor(tiny_policy(), "sde")
    inputs = toy_inputs(3)
    pending = actor.submit(inputs, seeds=[4, 5, 6])
    assert pending.ready()
    out = pending.result()
    assert pending.result() is out and pending.device_s is None
    ref = actor.act(inputs, seeds=[4, 5, 6])
    np.testing.assert_array_equal(out.actions, ref.actions)
    for a, b in zip(out.records, ref.records, strict=True):
        assert torch.equal(a["chain"], b["chain"]) and a["log_prob"] == b["log_prob"]
