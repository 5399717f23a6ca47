"""Compiled layers (ript_core.policy.fast.compiled_layers) for the update: the same
log-probs and gradients as the eager layers, with and without activation
checkpointing. torch.compile runs with the "aot_eager" backend here:
dynamo + AOTAutograd build the same forward/backward graphs as on a GPU,
without inductor's code generation."""

from __future__ import annotations

import pytest
import torch

import ript_core.policy.fast.compiled_layers as cl
from ript_core.policy.activation_checkpointing import set_activation_checkpointing
from ript_core.rl.actor import PI0Actor

from .conftest import make_inputs, tiny_policy


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(cl, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _logp_and_grads(policy, batch, out):
    policy.zero_grad(set_to_none=True)
    logp = policy.log_prob(batch, out.chain)
    logp.sum().backward()
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
    return logp.detach(), grads


@pytest.mark.parametrize("checkpointing", [False, True])
def test_compiled_update_matches_the_eager_one(aot_eager, checkpointing):
    policy = tiny_policy(seed=3, num_steps=3)
    batch = policy.preprocess(make_inputs(3, seed=6))
    out = policy.sample(batch, "sde", generator=torch.Generator().manual_seed(2))
    set_activation_checkpointing(policy.model, checkpointing)
    try:
        eager_logp, eager_grads = _logp_and_grads(policy, batch, out)
        layers = cl.compiled_layers(policy.model)
        with layers.installed():
            assert cl.layers_compiled(policy.model)
            logp, grads = _logp_and_grads(policy, batch, out)
        assert not cl.layers_compiled(policy.model)  # uninstalled again
    finally:
        set_activation_checkpointing(policy.model, False)
    torch.testing.assert_close(logp, eager_logp, atol=1e-5, rtol=1e-5)
    assert eager_grads.keys() <= grads.keys() and len(eager_grads) > 10
    for name, g in eager_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)
    # a compiled graph returns zeros where eager autograd leaves None: the
    # last Gemma layer's query/MLP weights, whose outputs PI0 never reads
    # (the expert reads only that layer's keys and values)
    for name in grads.keys() - eager_grads.keys():
        assert "language_model.layers" in name and not grads[name].any(), name
    assert cl.compiled_layers(policy.model) is layers  # one set of graphs per model


def test_old_log_prob_through_compiled_layers_is_the_gradient_pass_forward(aot_eager):
    """Compiled, a no-grad forward is another graph than the training one;
    ``old_log_prob`` then runs with grad mode on, so it equals the forward
    of the gradient pass exactly."""
    policy = tiny_policy(seed=4, num_steps=3)
    actor = PI0Actor(policy)
    inputs = make_inputs(3, seed=7)
    batch = policy.preprocess(inputs)
    out = policy.sample(batch, "sde", generator=torch.Generator().manual_seed(5))
    records = [
        {"chain": out.chain[i], "log_prob": float(out.log_prob[i]), "stochastic_step": None}
        for i in range(3)
    ]
    with cl.compiled_layers(policy.model).installed():
        old = actor.old_log_prob(inputs, records)
        new = actor.log_prob(inputs, records)
    assert not old.requires_grad and new.requires_grad
    torch.testing.assert_close(old, new.detach(), atol=0, rtol=0)


def test_every_batch_bucket_runs_compiled(aot_eager, caplog):
    """``policy.compile`` across the sampler's batch buckets: no layer falls
    back to eager. Dynamo keeps one cache entry per Gemma/expert layer and
    signature (their cache update indexes storage by ``layer_idx``); past its
    recompile limit it runs the layer eagerly and only logs a warning -- here
    that is made an error, starting from dynamo's own default limits."""
    from ript_core.policy.activation_checkpointing import checkpointed_layers
    from ript_core.policy.fast.sampler import FastSampler

    config = torch._dynamo.config
    policy = tiny_policy(seed=1, num_steps=2)
    sampler = FastSampler(policy, use_graphs=False, compile_layers=True, bucket_batches=True)
    # config.patch, not monkeypatch: monkeypatch would delete the entries on undo
    with config.patch(
        recompile_limit=8, accumulated_recompile_limit=256, fail_on_recompile_limit_hit=True
    ):
        for n in (1, 2, 3, 5, 4):  # buckets 1, 2, 4, 8, then 4 again
            batch = policy.preprocess(make_inputs(n, seed=n))
            with caplog.at_level("INFO", logger="ript_core.policy.fast.sampler"):
                out = sampler.sample(batch, "ode", None, None, 0.0, 2)
            assert out.actions.shape[0] == n
        limit = config.recompile_limit
    # one "ready" line per new bucket (first use compiles), none for a repeat
    ready = [r.getMessage() for r in caplog.records if "ready in" in r.getMessage()]
    assert [m.split("bucket ")[1].split(",")[0] for m in ready] == ["1", "2", "4", "8"]
    assert all("compiled layers" in m for m in ready)
    assert limit >= cl.SIGNATURES_PER_LAYER * len(checkpointed_layers(policy.model))


def test_compiled_key_limited_sampler_matches_the_eager_layers(aot_eager):
    """The key-limited route (varlen_attention.py) through compiled layers:
    dynamo traces the limits kwarg and the cache's per-sample suffix writes
    into the same chunks as the eager layers."""
    from ript_core.policy.fast.sampler import FastSampler

    policy = tiny_policy(seed=2, num_steps=2)
    inputs = make_inputs(3, seed=9)
    inputs[2] = make_inputs(3, seed=4, wrist=False)[2]  # a camera missing mid-prefix
    batch = policy.preprocess(inputs)
    noise = torch.randn(3, policy.chunk_size, policy.max_action_dim)
    compiled = FastSampler(policy, use_graphs=False, compile_layers=True, varlen=True)
    plain = FastSampler(policy, use_graphs=False, varlen=True)
    out = compiled.sample(batch, "ode", None, noise, 0.0, 2)
    ref = plain.sample(batch, "ode", None, noise, 0.0, 2)
    assert (out.chain - ref.chain).abs().max().item() <= 1e-5
