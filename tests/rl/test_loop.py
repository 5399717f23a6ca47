import numpy as np
import pytest
import torch

from ript_core.rl.actor import fixed_size
from ript_core.rl.config import UpdateConfig
from ript_core.rl.ript import (
    Decision,
    is_informative,
    leave_one_out_advantages,
    loop_update,
    ppo_loss,
)


def test_leave_one_out_advantages_on_hand_made_groups():
    rewards = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    adv = leave_one_out_advantages(rewards)
    np.testing.assert_allclose(adv[0], [1, -1 / 3, -1 / 3, -1 / 3])
    np.testing.assert_allclose(adv[1], [2 / 3, 2 / 3, -2 / 3, -2 / 3])
    np.testing.assert_array_equal(adv[2:], 0)
    # closed form: K/(K-1) * (R - mean R)
    r = np.random.default_rng(0).integers(0, 2, (50, 5))
    np.testing.assert_allclose(leave_one_out_advantages(r), 5 / 4 * (r - r.mean(1, keepdims=True)))
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_advantages(np.ones((3, 1)))


def test_all_equal_groups_are_not_informative():
    assert not is_informative([1, 1, 1, 1])
    assert not is_informative([0.0, 0.0])
    assert is_informative([0, 1, 0, 0])


def test_ppo_ratio_is_one_when_weights_are_unchanged_and_clipping_engages():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    adv = torch.tensor([1.0, -1.0, 0.5])
    loss, stats = ppo_loss(logp, logp.clone(), adv, clip=0.2)
    assert stats["ratio_mean"] == 1.0 and stats["clip_frac"] == 0.0
    assert loss.item() == pytest.approx(-adv.mean().item())
    # ratio 1.5 with positive advantage: clipped to 1.2 and no gradient flows
    new = torch.log(torch.tensor([1.5])).requires_grad_()
    loss, stats = ppo_loss(new, torch.zeros(1), torch.ones(1), clip=0.2)
    loss.backward()
    assert (
        loss.item() == pytest.approx(-1.2) and new.grad.item() == 0.0 and stats["clip_frac"] == 1.0
    )
    # ratio 0.5 with positive advantage: not clipped (pessimistic bound), gradient flows
    new = torch.log(torch.tensor([0.5])).requires_grad_()
    loss, _ = ppo_loss(new, torch.zeros(1), torch.ones(1), clip=0.2)
    loss.backward()
    assert loss.item() == pytest.approx(-0.5) and new.grad.item() == pytest.approx(-0.5)


class Gauss1D(torch.nn.Module):
    """pi(a) = N(mu, 1): the simplest policy whose log-prob PPO can move."""

    def __init__(self, mu=0.0):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.tensor(mu))

    def log_prob(self, inputs, records):
        a = torch.tensor([r["action"] for r in records])
        return -0.5 * (a - self.mu) ** 2


def decisions_for(policy, actions, advantages):
    with torch.no_grad():
        old = policy.log_prob(None, [{"action": a} for a in actions])
    return [
        Decision(None, {"action": a, "log_prob": float(lp)}, adv)
        for a, lp, adv in zip(actions, old, advantages, strict=True)
    ]


def test_update_moves_the_policy_towards_positive_advantage():
    policy = Gauss1D()
    decisions = decisions_for(policy, [1.0, -1.0, 0.8, -0.9], [1.0, -1.0, 1.0, -1.0])
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    logs = loop_update(decisions, policy.log_prob, list(policy.parameters()), opt,
                       UpdateConfig(ppo_epochs=3, micro_batch=3), np.random.default_rng(0))  # fmt: skip
    assert policy.mu.item() > 0.05
    assert logs["optimizer_steps"] == 3 and logs["skipped_steps"] == 0
    # the first epoch saw ratio exactly 1
    assert logs["ratio_mean"] != 1.0  # later epochs moved it...
    policy2 = Gauss1D()
    first = loop_update(decisions_for(policy2, [1.0], [1.0]), policy2.log_prob,
                        list(policy2.parameters()), torch.optim.SGD(policy2.parameters(), lr=0.1),
                        UpdateConfig(ppo_epochs=1), np.random.default_rng(0))  # fmt: skip
    assert first["ratio_mean"] == 1.0  # ...the first did not


def test_micro_batching_accumulates_to_the_full_batch_gradient():
    grads = []
    for micro in (1, 2, 8):
        policy = Gauss1D(0.3)
        decisions = decisions_for(policy, [1.0, -1.0, 0.5, 2.0, -0.2], [1.0, -0.5, 0.25, 1.0, -1.0])
        opt = torch.optim.SGD(policy.parameters(), lr=1.0)
        loop_update(decisions, policy.log_prob, list(policy.parameters()), opt,
                    UpdateConfig(micro_batch=micro, max_grad_norm=1e9), np.random.default_rng(0))  # fmt: skip
        grads.append(0.3 - policy.mu.item())
    assert grads[0] == pytest.approx(grads[1], abs=1e-7) == pytest.approx(grads[2], abs=1e-7)


def test_non_finite_loss_skips_the_step_and_leaves_weights_and_optimizer_untouched():
    policy = Gauss1D(0.5)
    opt = torch.optim.AdamW(policy.parameters(), lr=0.1)
    good = decisions_for(policy, [1.0, -1.0], [1.0, -1.0])
    loop_update(
        good,
        policy.log_prob,
        list(policy.parameters()),
        opt,
        UpdateConfig(),
        np.random.default_rng(0),
    )
    mu_before = policy.mu.item()
    state_before = {k: v.clone() for k, v in opt.state[policy.mu].items()}
    bad = decisions_for(policy, [1.0, float("nan")], [1.0, -1.0])
    logs = loop_update(
        bad,
        policy.log_prob,
        list(policy.parameters()),
        opt,
        UpdateConfig(),
        np.random.default_rng(0),
    )
    assert logs["skipped_steps"] == 1 and logs["optimizer_steps"] == 0
    assert policy.mu.item() == mu_before
    for k, v in opt.state[policy.mu].items():
        assert torch.equal(v, state_before[k]), k


def test_recomputed_old_log_probs_make_the_first_ratio_exactly_one():
    """In bf16 the sampler's arithmetic and the update's differ (other matmul
    shapes, other attention kernels): the recorded log-prob is off by some
    rounding. With ``old_log_prob`` the denominator is recomputed with the
    update's own function, in the update's micro-batches, before any step."""
    policy = Gauss1D(0.2)
    actions, adv = [1.0, -1.0, 0.5, 2.0, -0.2], [1.0, -0.5, 0.25, 1.0, -1.0]
    shift = torch.tensor([0.3, -0.25, 0.1, 0.0, 0.2])  # "sampler rounding"
    decisions = decisions_for(policy, actions, adv)
    for d, s in zip(decisions, shift.tolist(), strict=True):
        d.record["log_prob"] += s
    cfg = UpdateConfig(ppo_epochs=1, micro_batch=2, max_grad_norm=1e9)
    sizes: list[int] = []

    def old_log_prob(inputs, records):
        sizes.append(len(records))
        with torch.no_grad():
            return policy.log_prob(inputs, records)

    def run(old):
        opt = torch.optim.SGD(policy.parameters(), lr=0.0)  # weights stay: ratio is the check
        return loop_update(decisions, policy.log_prob, list(policy.parameters()), opt, cfg,
                           np.random.default_rng(0), old_log_prob=old)  # fmt: skip

    recorded = run(None)
    assert recorded["ratio_mean"] != pytest.approx(1.0, abs=1e-3)
    assert recorded["clip_frac"] > 0  # the 0.3 and 0.25 shifts leave the clip range
    recomputed = run(old_log_prob)
    assert recomputed["ratio_mean"] == 1.0 and recomputed["clip_frac"] == 0.0
    assert sizes == [2, 2, 1]  # the update's micro-batch size, each decision once
    assert recomputed["old_log_prob_shift"] == pytest.approx(shift.abs().mean().item())


def test_old_log_prob_mode_is_validated():
    assert UpdateConfig().old_log_prob == "auto"
    with pytest.raises(ValueError, match="old_log_prob"):
        UpdateConfig(old_log_prob="sampled")


def test_fixed_size_batches_give_the_real_rows_their_own_log_probs_and_gradients():
    """update.compile pads each micro-batch to one size (a new size recompiled
    every layer): the function sees ``rows`` rows, the caller gets the real
    rows' log-probs, equal to an unpadded call, and only their gradients."""
    from ript_core.rl.actor import PI0Actor
    from tests.rl.fixtures import fixed_decisions, tiny_policy

    policy = tiny_policy(seed=2)
    decisions = fixed_decisions(policy, 3)
    actor = PI0Actor(policy)
    seen = []

    def spy(inputs, records):
        seen.append(len(inputs))
        return actor.log_prob(inputs, records)

    inputs, records = [d.policy_input for d in decisions], [d.record for d in decisions]
    weights = torch.tensor([1.0, -2.0, 0.5])

    def grads(fn):
        policy.zero_grad(set_to_none=True)
        logp = fn(inputs, records)
        (logp * weights).sum().backward()
        out = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
        return logp.detach(), out

    plain_logp, plain_grads = grads(actor.log_prob)
    padded_logp, padded_grads = grads(fixed_size(spy, 5))
    assert seen == [5] and padded_logp.shape == (3,)
    torch.testing.assert_close(padded_logp, plain_logp, rtol=0, atol=1e-5)
    assert padded_grads.keys() == plain_grads.keys() and plain_grads
    for name, g in plain_grads.items():
        torch.testing.assert_close(padded_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
    # full and empty batches pass through untouched
    seen.clear()
    fixed_size(spy, 3)(inputs, records)
    fixed_size(spy, 2)(inputs, records)
    assert seen == [3, 3]


def test_a_fixed_size_update_equals_the_plain_one():
    """7 decisions in micro-batches of 3 (3 + 3 + 1): padded to 3 every time,
    the same step as without padding."""
    results = []
    for pad in (False, True):
        policy = Gauss1D(0.3)
        actions = [1.0, -1.0, 0.5, 2.0, -0.2, 0.7, -1.5]
        decisions = decisions_for(policy, actions, [1.0, -0.5, 0.25, 1.0, -1.0, 0.5, -0.25])
        sizes = []

        def logp(inputs, records, policy=policy, sizes=sizes):
            sizes.append(len(records))
            return policy.log_prob(inputs, records)

        fn = fixed_size(logp, 3) if pad else logp
        opt = torch.optim.SGD(policy.parameters(), lr=1.0)
        loop_update(decisions, fn, list(policy.parameters()), opt,
                    UpdateConfig(micro_batch=3, max_grad_norm=1e9), np.random.default_rng(0))  # fmt: skip
        results.append(policy.mu.item())
        assert sizes == ([3, 3, 3] if pad else [3, 3, 1])
    assert results[1] == pytest.approx(results[0], abs=1e-7)
