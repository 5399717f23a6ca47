"""ODE parity with transformers, SDE <-> ODE, and the chain log-prob."""

from __future__ import annotations

import math

import pytest
import torch

from tests.policy.conftest import make_inputs, tiny_policy


def reference_actions(policy, batch, noise, with_mask: bool = True):
    """transformers' own sampler on the same model inputs."""
    kw = policy.model_inputs(batch)
    return policy.model.sample_actions(
        kw["state"],
        kw["input_ids"],
        kw["pixel_values"],
        noise=noise,
        attention_mask=kw["attention_mask"] if with_mask else None,
        pixel_attention_mask=kw["pixel_attention_mask"],
    )


def test_ode_equals_transformers_sample_actions(policy):
    batch = policy.preprocess(make_inputs(6))
    noise = torch.randn(
        6, policy.chunk_size, policy.max_action_dim, generator=torch.Generator().manual_seed(1)
    )
    out = policy.sample(batch, "ode", noise=noise)
    ref = reference_actions(policy, batch, noise)
    assert out.actions.dtype == torch.float32
    assert (out.actions - ref).abs().max().item() <= 1e-6
    assert out.chain.shape == (6, policy.num_steps + 1, policy.chunk_size, policy.max_action_dim)
    assert torch.equal(out.chain[:, 0], noise) and torch.equal(out.chain[:, -1], out.actions)
    assert torch.count_nonzero(out.log_prob) == 0


def test_attention_mask_is_passed_and_matters(policy):
    """transformers with attention_mask=None attends to prompt padding and shifts
    RoPE positions (DESIGN §6): if our sampler dropped the mask it would agree
    with that call instead of the masked one."""
    batch = policy.preprocess(make_inputs(4))
    assert not bool(batch.token_masks.all()), "the test needs padded prompts"
    noise = torch.randn(
        4, policy.chunk_size, policy.max_action_dim, generator=torch.Generator().manual_seed(2)
    )
    ours = policy.sample(batch, "ode", noise=noise).actions
    unmasked = reference_actions(policy, batch, noise, with_mask=False)
    assert (ours - reference_actions(policy, batch, noise)).abs().max().item() <= 1e-6
    assert (ours - unmasked).abs().max().item() > 1e-3


def test_prompt_padding_and_missing_camera_are_inert():
    """More padding, or dropping a camera slot nobody provides, changes nothing
    beyond float noise: both are masked and skip RoPE positions."""
    inputs = make_inputs(3, wrist=False)
    noise = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(3))
    base = tiny_policy(drop_missing_cameras=False)
    longer = tiny_policy(max_token_len=24)
    longer.load_state_dict(base.state_dict())
    dropped = tiny_policy(drop_missing_cameras=True)
    dropped.load_state_dict(base.state_dict())
    a = base.sample(base.preprocess(inputs), "ode", noise=noise).actions
    b = longer.sample(longer.preprocess(inputs), "ode", noise=noise).actions
    c = dropped.sample(dropped.preprocess(inputs), "ode", noise=noise).actions
    assert base.model_inputs(base.preprocess(inputs))["input_ids"].shape[1] == 2 * 16 + 16
    assert dropped.model_inputs(dropped.preprocess(inputs))["input_ids"].shape[1] == 16 + 16
    assert (a - b).abs().max().item() < 1e-5
    assert (a - c).abs().max().item() < 1e-5


def test_swapping_cameras_changes_actions(policy):
    """A camera's slot is not inert: base and wrist must not be interchangeable."""
    inputs = make_inputs(2)
    swapped = [
        type(i)(
            images={
                "base_0_rgb": i.images["left_wrist_0_rgb"],
                "left_wrist_0_rgb": i.images["base_0_rgb"],
            },
            state=i.state,
            prompt=i.prompt,
        )
        for i in inputs
    ]
    noise = torch.randn(2, 10, 8, generator=torch.Generator().manual_seed(4))
    a = policy.sample(policy.preprocess(inputs), "ode", noise=noise).actions
    b = policy.sample(policy.preprocess(swapped), "ode", noise=noise).actions
    assert (a - b).abs().max().item() > 1e-4


@pytest.mark.parametrize("scheme", ["all", "one"])
def test_sde_with_zero_noise_is_the_ode(scheme):
    policy = tiny_policy(sde_scheme=scheme, sde_noise_region="all")
    batch = policy.preprocess(make_inputs(4))
    noise = torch.randn(4, 10, 8, generator=torch.Generator().manual_seed(5))
    ode = policy.sample(batch, "ode", noise=noise)
    sde = policy.sample(
        batch, "sde", noise=noise, noise_level=0.0, generator=torch.Generator().manual_seed(6)
    )
    assert torch.equal(sde.actions, ode.actions)
    assert torch.equal(sde.chain, ode.chain)
    # and continuously: a tiny noise level moves actions by a tiny amount
    near = policy.sample(
        batch, "sde", noise=noise, noise_level=1e-6, generator=torch.Generator().manual_seed(6)
    )
    assert 0 < (near.actions - ode.actions).abs().max().item() < 1e-4


@pytest.mark.parametrize("scheme", ["all", "one"])
def test_recomputed_log_prob_matches_recorded(scheme):
    policy = tiny_policy(sde_scheme=scheme)
    batch = policy.preprocess(make_inputs(8))
    out = policy.sample(batch, "sde", generator=torch.Generator().manual_seed(7))
    assert out.log_prob.dtype == torch.float32
    assert (out.stochastic_step is None) == (scheme == "all")
    if scheme == "one":
        assert out.stochastic_step.shape == (8,)
        assert (
            int(out.stochastic_step.min()) >= 0
            and int(out.stochastic_step.max()) < policy.num_steps
        )
    logp = policy.log_prob(batch, out.chain, out.stochastic_step)
    assert logp.dtype == torch.float32 and logp.shape == (8,) and logp.requires_grad
    assert (logp - out.log_prob).abs().max().item() <= 1e-5
    # not trivially zero: the chain really is scored
    assert out.log_prob.abs().min().item() > 1e-3


def test_log_prob_changes_after_an_optimizer_step(policy):
    batch = policy.preprocess(make_inputs(4))
    out = policy.sample(batch, "sde", generator=torch.Generator().manual_seed(8))
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=3e-4)
    loss = -policy.log_prob(batch, out.chain).mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = policy.log_prob(batch, out.chain)
    assert (after - out.log_prob).abs().max().item() > 1e-3
    # gradient ascent on log-prob: the chain became more likely
    assert after.mean().item() > out.log_prob.mean().item()


@pytest.mark.parametrize("train_vlm", [True, False])
def test_gradients_reach_expert_and_optionally_vlm(train_vlm):
    policy = tiny_policy(train_vlm=train_vlm)
    batch = policy.preprocess(make_inputs(2))
    out = policy.sample(batch, "sde", generator=torch.Generator().manual_seed(9))
    policy.log_prob(batch, out.chain).sum().backward()

    def grad_norm(module):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        return sum(float(g.abs().sum()) for g in grads)

    model = policy.model
    assert grad_norm(model.model.dit) > 0
    assert grad_norm(model.embed_action_time) > 0
    assert grad_norm(model.action_out_proj) > 0
    if train_vlm:
        assert grad_norm(model.model.vlm.language_model) > 0
        assert grad_norm(model.model.vlm.vision_tower) > 0
    else:
        assert all(p.grad is None for p in model.model.vlm.parameters())
        assert not any(p.requires_grad for p in model.model.vlm.parameters())


def test_log_prob_only_counts_the_scored_window():
    """Entries outside logp_horizon x logp_action_dims neither get noise (with
    the default noise region) nor enter the log-prob."""
    policy = tiny_policy(logp_horizon=3, logp_action_dims=2)
    batch = policy.preprocess(make_inputs(3))
    noise = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(10))
    out = policy.sample(batch, "sde", noise=noise, generator=torch.Generator().manual_seed(11))
    ode = policy.sample(batch, "ode", noise=noise)
    region = policy.scored_region()
    assert int(region.sum()) == 6
    # the scored entries are noisy; a perturbed unscored entry in the final
    # action does not change the log-prob (x_0 outside the window is never scored)
    assert (out.actions - ode.actions)[:, region].abs().max().item() > 1e-3
    chain = out.chain.clone()
    chain[:, -1, 5:, :] += 1.0
    chain[:, -1, :, 4:] += 1.0
    assert torch.allclose(policy.log_prob(batch, chain), out.log_prob, atol=1e-5)


def test_one_step_one_dim_log_prob_is_the_closed_form_gaussian():
    """N=1 step from t=1 to t=0, one scored entry: x_0 ~ N(mean, std^2) with
    sigma = a (t=1 clipped to the first step: a*sqrt(1/Delta), Delta=1),
    mean = x_1 - v - (a^2/2) x_1, std = a. v comes from transformers' full
    (uncached) forward, independent of the policy's cached path."""
    a = 0.7
    policy = tiny_policy(num_steps=1, logp_horizon=1, logp_action_dims=1, noise_level=a)
    n = 1500
    batch = policy.preprocess(make_inputs(1) * n)
    x1 = (
        torch.randn(1, 10, 8, generator=torch.Generator().manual_seed(12))
        .expand(n, -1, -1)
        .contiguous()
    )
    out = policy.sample(batch, "sde", noise=x1, generator=torch.Generator().manual_seed(13))

    kw = policy.model_inputs(batch.select(slice(0, 1)))
    with torch.no_grad():
        v = policy.model(noise=x1[:1], timestep=torch.ones(1), **kw).logits[0, 0, 0].double()
    x = x1[0, 0, 0].double()
    mean = x - v - (a * a / 2.0) * x
    std = a
    x0 = out.actions[:, 0, 0].double()
    expected = -0.5 * ((x0 - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    assert torch.allclose(out.log_prob.double(), expected, atol=1e-5)
    # the samples really follow that Gaussian (1500 draws: 5-sigma bands)
    assert abs(x0.mean().item() - mean.item()) < 5 * std / math.sqrt(n)
    assert abs(x0.std().item() - std) < 5 * std / math.sqrt(2 * n)
    # unscored entries followed the Euler step exactly (no noise there)
    euler = x1[:1] - policy.model(noise=x1[:1], timestep=torch.ones(1), **kw).logits.detach()
    assert torch.allclose(out.actions[:, 1:], euler[:, 1:].expand(n, -1, -1), atol=1e-5)


def test_log_prob_requires_a_positive_noise_level(policy):
    batch = policy.preprocess(make_inputs(1))
    out = policy.sample(batch, "ode")
    with pytest.raises(ValueError, match="noise_level > 0"):
        policy.log_prob(batch, out.chain, noise_level=0.0)


def test_bf16_policy_keeps_the_flow_in_float32():
    """bf16 weights for the transformer stacks; the action/time embedding, the
    velocity head, the chain and the log-prob stay float32."""
    fp32 = tiny_policy(seed=1)
    bf16 = tiny_policy(seed=1, dtype="bfloat16")
    assert bf16.model.model.dit.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert bf16.model.embed_action_time.action_in_proj.weight.dtype == torch.float32
    assert bf16.model.action_out_proj.weight.dtype == torch.float32
    batch = bf16.preprocess(make_inputs(3))
    noise = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(14))
    out = bf16.sample(batch, "sde", noise=noise, generator=torch.Generator().manual_seed(15))
    assert out.chain.dtype == out.log_prob.dtype == torch.float32
    logp = bf16.log_prob(batch, out.chain)
    assert logp.dtype == torch.float32 and (logp - out.log_prob).abs().max().item() <= 1e-5
    ode16 = bf16.sample(batch, "ode", noise=noise).actions
    ode32 = fp32.sample(fp32.preprocess(make_inputs(3)), "ode", noise=noise).actions
    assert (ode16 - ode32).abs().max().item() < 0.1  # bf16 drift, not a different model
