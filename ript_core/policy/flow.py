r"""Flow-matching denoising steps as Gaussian transitions, and their densities.

Convention (openpi, lerobot, transformers agree): ``x_t = t*noise +
(1-t)*actions``, the network predicts ``v ~ noise - actions``, sampling runs
from ``t=1`` to ``t=0`` on the grid ``t_i = 1 + i*dt``, ``dt = -1/N``, and the
ODE step is Euler: ``x_{i+1} = x_i + dt*v``.

The stochastic step is the flow-SDE of Flow-GRPO / piRL (docs/policy.md,
"Sampling and log-probs"). With
``Delta = -dt > 0``, action estimate ``x0 = x - t*v`` and noise estimate
``x1 = x + (1-t)*v``::

    sigma_t = a * sqrt(t / (1 - t))          (at t = 1: sqrt(1 / Delta), i.e.
                                              1 - t clipped to the first step)
    mean    = x0*(1 - (t - Delta)) + x1*(t - Delta - sigma_t^2*Delta/(2t))
            = x + dt*v - (sigma_t^2*Delta/(2t)) * x1
    std     = sqrt(Delta) * sigma_t
    x_{i+1} ~ N(mean, std^2 I)

The second form of the mean is what is computed: with ``a = 0`` the
correction term is exactly ``0`` and the step is bit for bit the Euler step,
so the SDE sampler at noise level 0 *is* the ODE sampler.

Coefficients are computed once per step in float64 from Python floats and
then used as float32 tensors, identically at sampling time and at re-scoring
time, so an unchanged model re-scores a chain to the same number.
"""

from __future__ import annotations

import math

import attrs
import torch

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@attrs.frozen
class StepCoefficients:
    """Per-step constants of the chain (index ``i`` goes from ``t_i`` to ``t_{i+1}``)."""

    num_steps: int
    noise_level: float
    dt: float
    t: tuple[float, ...]
    one_minus_t: tuple[float, ...]
    drift: tuple[float, ...]  # sigma^2 * Delta / (2t)
    std: tuple[float, ...]  # sqrt(Delta) * sigma

    @classmethod
    def build(cls, num_steps: int, noise_level: float) -> StepCoefficients:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        dt = -1.0 / num_steps
        delta = -dt
        ts, omt, drift, std = [], [], [], []
        for i in range(num_steps):
            t = 1.0 + i * dt  # the same Python arithmetic as transformers' sample_actions
            denom = delta if t >= 1.0 else 1.0 - t
            sigma = noise_level * math.sqrt(t / denom)
            ts.append(t)
            omt.append(1.0 - t)
            drift.append(sigma * sigma * delta / (2.0 * t))
            std.append(math.sqrt(delta) * sigma)
        return cls(num_steps, noise_level, dt, tuple(ts), tuple(omt), tuple(drift), tuple(std))

    def column(
        self, name: str, steps: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``[B, 1, 1]`` tensor of coefficient ``name`` at per-sample step indices."""
        table = torch.tensor(getattr(self, name), dtype=torch.float64, device=steps.device)
        return table[steps].to(dtype)[:, None, None]


def euler_step(x: torch.Tensor, v: torch.Tensor, dt: float) -> torch.Tensor:
    """The ODE step, written exactly as transformers' ``sample_actions`` does."""
    return x + dt * v


def sde_mean(
    x: torch.Tensor, v: torch.Tensor, dt: float, one_minus_t: torch.Tensor, drift: torch.Tensor
) -> torch.Tensor:
    """Flow-SDE transition mean ``x + dt*v - drift*(x + (1-t)*v)`` (see module doc)."""
    return euler_step(x, v, dt) - drift * (x + one_minus_t * v)


def gaussian_log_prob(
    x_next: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, region: torch.Tensor
) -> torch.Tensor:
    """``sum_region log N(x_next; mean, std^2)`` per sample, in float64.

    ``std`` is ``[B, 1, 1]``; ``region`` a bool mask broadcastable to
    ``x_next`` that selects the scored entries (executed actions x real dims).
    """
    std64 = std.to(torch.float64)
    z = (x_next.to(torch.float64) - mean.to(torch.float64)) / std64
    logp = -0.5 * z * z - torch.log(std64) - LOG_SQRT_2PI
    return torch.where(region, logp, torch.zeros((), dtype=torch.float64, device=logp.device)).sum(
        dim=(-2, -1)
    )


def take_step(
    i: int,
    x_ode: torch.Tensor,
    x_sde: torch.Tensor,
    step_logp: torch.Tensor,
    logp: torch.Tensor,
    chosen: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """State and running log-prob after SDE-mode step ``i``: the stochastic draw
    and its log-density for every sample (``chosen`` None: ``sde_scheme="all"``),
    or only for the samples whose ``chosen`` step is ``i`` (``"one"``)."""
    if chosen is None:
        return x_sde, logp + step_logp
    here = chosen == i
    x = torch.where(here[:, None, None], x_sde, x_ode)
    return x, logp + torch.where(here, step_logp, torch.zeros_like(step_logp))
