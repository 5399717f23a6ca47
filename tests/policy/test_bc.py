"""Flow-matching BC loss."""

from __future__ import annotations

import torch

from tests.policy.conftest import make_inputs, tiny_policy


def test_bc_loss_matches_transformers_forward(policy):
    """Same noise and time: our cached-prefix loss equals an MSE on
    transformers' uncached forward over the real action dims."""
    batch = policy.preprocess(make_inputs(4))
    demo = torch.randn(4, 10, 3, generator=torch.Generator().manual_seed(0))
    loss = policy.bc_loss(batch, demo, generator=torch.Generator().manual_seed(1))

    g = torch.Generator().manual_seed(1)
    actions = policy.normalize_actions(demo)
    noise = torch.randn(actions.shape, generator=g)
    t = torch.rand(4, generator=g) ** (1 / 1.5) * 0.999 + 0.001
    x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
    v = policy.model(noise=x_t, timestep=t, **policy.model_inputs(batch)).logits
    expected = ((v - (noise - actions))[..., :3] ** 2).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_bc_loss_ignores_padding(policy):
    batch = policy.preprocess(make_inputs(2))
    demo = torch.randn(2, 10, 3)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[:, 6:] = True
    changed = demo.clone()
    changed[:, 6:] += 100.0
    a = policy.bc_loss(batch, demo, pad, generator=torch.Generator().manual_seed(2))
    b = policy.bc_loss(batch, changed, pad, generator=torch.Generator().manual_seed(2))
    c = policy.bc_loss(batch, changed, None, generator=torch.Generator().manual_seed(2))
    # padded steps still enter the expert as inputs (action tokens attend to each
    # other), so their values nudge the loss, but their errors are not counted
    assert abs(a - b) < 0.01 * a and c > 10 * a


def test_bc_training_fits_a_demo_and_reaches_the_vlm():
    """Adam steps on one fixed chunk: the (noisy) flow loss drops and the ODE
    sampler then reproduces the demo clearly better than before."""
    torch.manual_seed(0)
    policy = tiny_policy()
    batch = policy.preprocess(make_inputs(4))
    demo = torch.linspace(-1, 1, 10)[None, :, None].expand(4, 10, 3) * torch.tensor(
        [1.0, -0.5, 0.3]
    )
    noise = torch.randn(4, 10, 8, generator=torch.Generator().manual_seed(3))
    before = (
        (
            torch.from_numpy(policy.postprocess(policy.sample(batch, "ode", noise=noise).actions))
            - demo
        )
        .abs()
        .mean()
    )
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(4)
    losses = []
    for _ in range(90):
        opt.zero_grad()
        loss = policy.bc_loss(batch, demo, generator=g)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert policy.model.model.vlm.language_model.layers[0].mlp.up_proj.weight.grad is not None
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:5]) / 5
    after = (
        (
            torch.from_numpy(policy.postprocess(policy.sample(batch, "ode", noise=noise).actions))
            - demo
        )
        .abs()
        .mean()
    )
    assert after < 0.8 * before
