"""Behaviour cloning: the flow-matching loss on demonstration chunks (part of
:class:`~ript_core.policy.policy.PI0Policy`)."""

from __future__ import annotations

import torch

from ript_core.policy.attention import with_attention_backends
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.io.presets import Architecture


class BCMixin:
    """:meth:`bc_loss` and the training-time draw it uses."""

    arch: Architecture
    device: torch.device
    chunk_size: int
    action_dim: int

    def sample_time(self, bsz: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training time ``Beta(alpha, beta) * scale + offset`` (openpi: Beta(1.5, 1)*0.999+0.001).

        For ``beta == 1`` the Beta draw is ``u**(1/alpha)`` of a uniform, which
        lets a generator make BC reproducible.
        """
        cfg = self.arch.pi0_config
        if cfg.time_sampling_beta_beta == 1.0:
            u = torch.rand(bsz, generator=generator, device=self.device, dtype=torch.float32)
            beta = u ** (1.0 / cfg.time_sampling_beta_alpha)
        else:
            dist = torch.distributions.Beta(
                torch.tensor(cfg.time_sampling_beta_alpha),
                torch.tensor(cfg.time_sampling_beta_beta),
            )
            beta = dist.sample((bsz,)).to(self.device, torch.float32)
        return beta * cfg.time_sampling_scale + cfg.time_sampling_offset

    @with_attention_backends
    def bc_loss(
        self,
        batch: PolicyBatch,
        actions: torch.Tensor,
        action_is_pad: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Flow-matching loss on demonstration chunks (scalar).

        ``actions`` are raw ``[B, chunk, action_dim]``; they are normalised and
        padded like the model's outputs. Loss = mean squared error between the
        predicted velocity and ``noise - actions`` at ``x_t = t*noise +
        (1-t)*actions``, averaged over the real action dims and the chunk steps
        that are not padding (``action_is_pad`` True: past the episode end).
        Padded steps still enter the expert as inputs (whatever the dataset
        pads with), as in lerobot; only their errors are excluded.
        """
        bsz = len(batch)
        if actions.shape[:2] != (bsz, self.chunk_size):
            raise ValueError(
                f"actions must be [B={bsz}, chunk={self.chunk_size}, action_dim], "
                f"got {tuple(actions.shape)}"
            )
        target_actions = self.normalize_actions(actions)
        noise = torch.randn(
            target_actions.shape, generator=generator, device=self.device, dtype=torch.float32
        )
        t = self.sample_time(bsz, generator)
        te = t[:, None, None]
        x_t = te * noise + (1 - te) * target_actions
        inputs = self.model_inputs(batch)
        cache, prefix_len = self.encode_prefix(inputs)
        v = self.velocity(inputs, cache, prefix_len, x_t, t)
        err = (v - (noise - target_actions)) ** 2
        weight = torch.zeros_like(err)
        weight[..., : self.action_dim] = 1.0
        if action_is_pad is not None:
            weight = weight * (~action_is_pad.to(self.device, torch.bool))[..., None]
        return (err * weight).sum() / weight.sum().clamp_min(1.0)
