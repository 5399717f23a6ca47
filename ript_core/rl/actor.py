"""PI0 as the rollout runner and the LOOP update see it.

``act`` samples one chunk per observation (SDE for training rollouts, ODE
for evaluation) and keeps, per sample, what re-scoring needs: the denoising
chain, the recorded log-prob and the stochastic step. Every sample draws its
noise from its own generator seeded by the runner's per-decision seed, so an
episode's actions do not depend on which envs shared its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy import PI0Policy
from ript_core.policy.attention import update_kernels
from ript_core.policy.compiled_layers import layers_compiled
from ript_core.rollout.runner import PolicyOutput


class PI0Actor:
    def __init__(self, policy: PI0Policy, mode: str = "sde") -> None:
        self.policy = policy
        self.mode = mode

    def generators(self, seeds: Sequence[int]) -> list[torch.Generator]:
        return [torch.Generator(device=self.policy.device).manual_seed(int(s)) for s in seeds]

    def expect_batch_sizes(self, sizes: Sequence[int]) -> None:
        """The runner's call sizes (``planner.round_batch_sizes``), passed to
        the policy (:meth:`PI0Policy.expect_batch_sizes`)."""
        self.policy.expect_batch_sizes(sizes)

    @torch.no_grad()
    def act(self, inputs: Sequence[PolicyInput], seeds: Sequence[int]) -> PolicyOutput:
        batch = self.policy.preprocess(inputs)
        out = self.policy.sample(batch, self.mode, generator=self.generators(seeds))
        actions = self.policy.postprocess(out.actions, batch)
        chain = out.chain.cpu()
        logp = out.log_prob.cpu()
        step = out.stochastic_step.cpu() if out.stochastic_step is not None else None
        records = [
            {
                "chain": chain[i],
                "log_prob": float(logp[i]),
                "stochastic_step": None if step is None else int(step[i]),
            }
            for i in range(len(inputs))
        ]
        return PolicyOutput(actions, records)

    def log_prob(
        self, inputs: Sequence[PolicyInput], records: Sequence[dict[str, Any]]
    ) -> torch.Tensor:
        """Differentiable log-probs ``[B]`` of the recorded chains under the current weights."""
        batch = self.policy.preprocess(inputs)
        chain = torch.stack([r["chain"] for r in records])
        steps = [r["stochastic_step"] for r in records]
        step = None if steps[0] is None else torch.tensor(steps, dtype=torch.long)
        return self.policy.log_prob(batch, chain, step)

    def old_log_prob(
        self, inputs: Sequence[PolicyInput], records: Sequence[dict[str, Any]]
    ) -> torch.Tensor:
        """:meth:`log_prob` without gradients but with the update's kernels:
        the PPO ratio's denominator, recomputed with the arithmetic of the
        numerator (``update.old_log_prob: recompute``). Through compiled
        layers (``update.compile``) a no-grad forward is another compiled
        graph than the gradient pass's (0.3 nats apart on the H100), so then
        it runs with grad mode on and drops the graph."""
        grad = layers_compiled(self.policy.model)
        with torch.set_grad_enabled(grad), update_kernels():
            return self.log_prob(inputs, records).detach()
