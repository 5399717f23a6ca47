"""Re-scoring a sampled chain under the current weights, with gradients (part
of :class:`~ript_core.policy.policy.PI0Policy`)."""

from __future__ import annotations

import torch

from ript_core.policy.activation_checkpointing import frozen_view
from ript_core.policy.attention import with_attention_backends
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.config import PolicyConfig
from ript_core.policy.flow import StepCoefficients, gaussian_log_prob, sde_mean

#: The model inputs ``velocity`` reads per row (the prefix comes from the cache).
_PER_SAMPLE_INPUTS = ("state", "attention_mask", "pixel_attention_mask")


class LogProbMixin:
    """:meth:`log_prob` of an SDE chain: the PPO update's forward."""

    config: PolicyConfig
    device: torch.device

    @with_attention_backends
    def log_prob(
        self,
        batch: PolicyBatch,
        chain: torch.Tensor,
        stochastic_step: torch.Tensor | None = None,
        *,
        noise_level: float | None = None,
    ) -> torch.Tensor:
        """Log-density ``[B]`` (float32) of ``chain`` under the current weights.

        ``stochastic_step=None``: every transition is Gaussian, the log-prob
        sums over all of them (one expert pass over all steps' rows). A ``[B]`` tensor:
        only that transition per sample is scored (one expert pass in all).
        Differentiable through the expert and -- if trainable -- the VLM; the
        prefix is encoded once. Sums over :meth:`scored_region` only.
        """
        level = self.config.noise_level if noise_level is None else float(noise_level)
        if level <= 0.0:
            raise ValueError("log_prob needs noise_level > 0: the ODE chain has no density")
        chain = chain.to(device=self.device, dtype=torch.float32)
        steps = chain.shape[1] - 1
        coeffs = StepCoefficients.build(steps, level)
        bsz, device = chain.shape[0], chain.device
        region = self.scored_region(device)
        inputs = self.model_inputs(batch)
        cache, prefix_len = self.encode_prefix(inputs)

        if stochastic_step is not None:
            idx = stochastic_step.to(device=device, dtype=torch.long)
            rows = torch.arange(bsz, device=device)
            x, x_next = chain[rows, idx], chain[rows, idx + 1]
            t = coeffs.column("t", idx, torch.float64)[:, 0, 0]
            v = self.velocity(inputs, cache, prefix_len, x, t)
            mean = sde_mean(
                x, v, coeffs.dt, coeffs.column("one_minus_t", idx), coeffs.column("drift", idx)
            )
            return gaussian_log_prob(x_next, mean, coeffs.column("std", idx), region).to(
                torch.float32
            )

        # every transition at once: the chain is given, so the steps do not
        # depend on each other -- one expert pass over B x steps rows, each
        # attending to its sample's prefix, instead of `steps` small passes
        # (same maths; bigger matmuls and 1/steps of the kernel launches)
        idx = torch.arange(steps, device=device).repeat(bsz)  # row b*steps + i -> step i
        t = torch.tensor(coeffs.t, dtype=torch.float64, device=device).repeat(bsz)
        rows = {k: inputs[k].repeat_interleave(steps, dim=0) for k in _PER_SAMPLE_INPUTS}
        x = chain[:, :-1].reshape(bsz * steps, *chain.shape[2:])
        v = self.velocity(rows, frozen_view(cache, repeats=steps), prefix_len, x, t)
        mean = sde_mean(
            x, v, coeffs.dt, coeffs.column("one_minus_t", idx), coeffs.column("drift", idx)
        )
        x_next = chain[:, 1:].reshape(bsz * steps, *chain.shape[2:])
        logp = gaussian_log_prob(x_next, mean, coeffs.column("std", idx), region)
        logp = logp.view(bsz, steps).sum(dim=1)
        return logp.to(torch.float32)
