"""The eager sampler, its output, and the noise draws both sampling paths use.

:func:`sample_eager` mirrors transformers' ``sample_actions`` operation for
operation, so that ``mode="ode"`` reproduces it bit for bit; the same loop
with the Gaussian transitions of :mod:`ript_core.policy.flow` is the
stochastic sampler whose chain :meth:`PI0Policy.log_prob` re-scores. The
static-cache sampler (:mod:`ript_core.policy.fast.sampler`) draws its noise
with :func:`draw_randn` / :func:`draw_randint` in the same order, so both
paths give the same chunk for the same generators.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import torch

from ript_core.policy.batch import PolicyBatch
from ript_core.policy.flow import (
    StepCoefficients,
    euler_step,
    gaussian_log_prob,
    sde_mean,
    take_step,
)

if TYPE_CHECKING:
    from ript_core.policy.policy import PI0Policy

#: One generator for the batch, one per sample, or None (torch's default).
Generators = torch.Generator | Sequence[torch.Generator] | None


@attrs.frozen
class SampleOutput:
    """One action chunk per sample and what re-scoring it needs.

    - ``actions`` ``[B, chunk, max_action_dim]`` float32, normalised (``x_0``);
    - ``chain`` ``[B, num_steps + 1, chunk, max_action_dim]`` float32:
      ``x_1`` (the initial noise) ... ``x_0``;
    - ``log_prob`` ``[B]`` float32: log-density of the chain's stochastic
      transitions over the scored entries (zeros for ``ode`` or noise level 0);
    - ``stochastic_step`` ``[B]`` long for ``sde_scheme="one"`` (which
      transition was stochastic), ``None`` when every step was (``"all"``) or
      none was (``ode``). Pass it to :meth:`PI0Policy.log_prob`.
    """

    actions: torch.Tensor
    chain: torch.Tensor
    log_prob: torch.Tensor
    stochastic_step: torch.Tensor | None
    mode: str
    noise_level: float


def per_sample_generators(generator: Any, bsz: int) -> list[torch.Generator] | None:
    """``generator`` as one generator per sample, or None when it is one (or none)."""
    if generator is None or isinstance(generator, torch.Generator):
        return None
    gens = list(generator)
    if len(gens) != bsz:
        raise ValueError(f"got {len(gens)} generators for a batch of {bsz}")
    return gens


def draw_randn(shape: tuple[int, ...], generator: Any, device: torch.device) -> torch.Tensor:
    """Standard normal float32 noise, from one generator or one per sample
    (row ``b`` from ``generator[b]``: a sample's noise does not depend on the
    other samples of its batch)."""
    gens = per_sample_generators(generator, shape[0])
    if gens is None:
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    return torch.stack(
        [torch.randn(shape[1:], generator=g, device=device, dtype=torch.float32) for g in gens]
    )


def draw_randint(high: int, bsz: int, generator: Any, device: torch.device) -> torch.Tensor:
    """``[bsz]`` integers in ``[0, high)``, from one generator or one per sample."""
    gens = per_sample_generators(generator, bsz)
    if gens is None:
        return torch.randint(0, high, (bsz,), generator=generator, device=device)
    return torch.cat([torch.randint(0, high, (1,), generator=g, device=device) for g in gens])


def sample_eager(
    policy: PI0Policy,
    batch: PolicyBatch,
    mode: str,
    generator: Generators,
    x: torch.Tensor,
    level: float,
    steps: int,
) -> SampleOutput:
    """The reference sampler: prefix encoded once into transformers' cache,
    then ``steps`` expert passes from ``x`` (``x_1``, float32). The RNG draws
    after ``x_1``: the stochastic step (``sde_scheme="one"``), then one noise
    tensor per step."""
    coeffs = StepCoefficients.build(steps, level if mode == "sde" else 0.0)
    bsz, device = len(batch), batch.device
    shape = (bsz, policy.chunk_size, policy.max_action_dim)
    stochastic = mode == "sde" and level > 0.0
    one_step = stochastic and policy.config.sde_scheme == "one"
    chosen = draw_randint(steps, bsz, generator, device) if one_step else None
    region = policy.scored_region(device)
    noise_region = region if policy.config.sde_noise_region == "scored" else torch.ones_like(region)

    inputs = policy.model_inputs(batch)
    cache, prefix_len = policy.encode_prefix(inputs)
    chain = [x]
    logp = torch.zeros(bsz, dtype=torch.float64, device=device)
    for i in range(steps):
        # float64 t: the time embedding is float64 (precision.py); float32
        # would round the grid point before it is embedded
        t = torch.full((bsz,), coeffs.t[i], dtype=torch.float64, device=device)
        v = policy.velocity(inputs, cache, prefix_len, x, t)
        x_ode = euler_step(x, v, coeffs.dt)
        if mode == "ode":
            x = x_ode
        else:
            idx = torch.full((bsz,), i, dtype=torch.long, device=device)
            mean = sde_mean(
                x, v, coeffs.dt, coeffs.column("one_minus_t", idx), coeffs.column("drift", idx)
            )
            std = coeffs.column("std", idx)
            eps = draw_randn(shape, generator, device)
            x_sde = torch.where(noise_region, mean + std * eps, x_ode)
            step_logp = (
                gaussian_log_prob(x_sde, mean, std, region)
                if stochastic
                else torch.zeros_like(logp)
            )
            x, logp = take_step(i, x_ode, x_sde, step_logp, logp, chosen)
        chain.append(x)
    return SampleOutput(
        actions=x,
        chain=torch.stack(chain, dim=1),
        log_prob=logp.to(torch.float32),
        stochastic_step=chosen,
        mode=mode,
        noise_level=level if mode == "sde" else 0.0,
    )
