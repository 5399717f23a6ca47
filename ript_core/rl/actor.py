"""PI0 as the rollout runner and the LOOP update see it.

``act`` samples one chunk per observation (SDE for training rollouts, ODE
for evaluation) and keeps, per sample, what re-scoring needs: the denoising
chain, the recorded log-prob and the stochastic step. Every sample draws its
noise from its own generator seeded by the runner's per-decision seed, so an
episode's actions do not depend on which envs shared its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy import PI0Policy
from ript_core.policy.attention import update_kernels
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.fast.compiled_layers import layers_compiled
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

    def act(self, inputs: Sequence[PolicyInput], seeds: Sequence[int]) -> PolicyOutput:
        return self.submit(inputs, seeds).result()

    @torch.no_grad()
    def submit(self, inputs: Sequence[PolicyInput], seeds: Sequence[int]) -> PendingChunk:
        """Preprocess and queue the chunk's device work; return before it
        runs. On CUDA nothing here waits for the GPU (non-blocking pinned
        transfers, no device reads), so the runner prepares the next group's
        call while this one computes; :meth:`PendingChunk.result` waits.

        The outputs are copied to the host in the same queue, right behind
        the chunk: un-normalising them on the GPU later would queue that work
        behind every call submitted since, and this call's envs would wait
        for all of them (docs/benchmarks.md)."""
        cuda = self.policy.device.type == "cuda"
        start = torch.cuda.Event(enable_timing=True) if cuda else None
        if start is not None:
            start.record()
        batch = self.policy.preprocess(inputs)
        out = self.policy.sample(batch, self.mode, generator=self.generators(seeds))
        host = {
            "actions": _to_host(out.actions),
            "chain": _to_host(out.chain),
            "log_prob": _to_host(out.log_prob),
            "state": _to_host(batch.state),
        }
        if out.stochastic_step is not None:
            host["stochastic_step"] = _to_host(out.stochastic_step)
        end = torch.cuda.Event(enable_timing=True) if cuda else None
        if end is not None:
            end.record()
        return PendingChunk(self.policy, batch, host, start, end)

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
        graph than the gradient pass's, with other rounding, so then it runs
        with grad mode on and drops the graph."""
        grad = layers_compiled(self.policy.model)
        with torch.set_grad_enabled(grad), update_kernels():
            return self.log_prob(inputs, records).detach()


#: ``log_prob(inputs, records) -> [B]``: how the LOOP update scores decisions.
LogProb = Callable[[Sequence[Any], Sequence[dict[str, Any]]], torch.Tensor]


def fixed_size(log_prob: LogProb, rows: int) -> LogProb:
    """``log_prob`` that always sees ``rows`` rows: a shorter batch (an update's
    last micro-batch) is filled up with copies of its first row, and only the
    real rows' log-probs come back (the copies get no gradient). For compiled
    layers (``update.compile``), where every new batch size would recompile every
    layer. Rows do not interact in ``log_prob``, so the real rows' values are
    those of an unpadded call up to the kernels' rounding."""

    def call(inputs: Sequence[Any], records: Sequence[dict[str, Any]]) -> torch.Tensor:
        n = len(inputs)
        if n == 0 or n >= rows:
            return log_prob(inputs, records)
        fill = rows - n
        return log_prob([*inputs, *[inputs[0]] * fill], [*records, *[records[0]] * fill])[:n]

    return call


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """A host copy of ``t``, queued behind the work that makes it (pinned
    memory, non-blocking); ``t`` itself off CUDA."""
    if t.device.type != "cuda":
        return t
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)


class PendingChunk:
    """One :meth:`PI0Actor.submit` in flight (the runner's ``PendingOutput``).

    ``device_s``: after :meth:`result`, the GPU time between the call's two
    CUDA events -- from when the stream reached the call to its outputs'
    copies to the host; ``None`` off CUDA, where the call ran inside ``submit``.
    """

    def __init__(
        self,
        policy: PI0Policy,
        batch: PolicyBatch,
        host: dict[str, torch.Tensor],
        start: torch.cuda.Event | None,
        end: torch.cuda.Event | None,
    ) -> None:
        self._policy, self._batch, self._host = policy, batch, host
        self._start, self._end = start, end
        self._result: PolicyOutput | None = None
        self.device_s: float | None = None

    def ready(self) -> bool:
        """Whether :meth:`result` would return without waiting for the device."""
        return self._end is None or self._end.query()

    @torch.no_grad()
    def result(self) -> PolicyOutput:
        """Wait for the host copies, then un-normalise on the host (float64,
        as openpi's numpy output transforms): no GPU work is queued here."""
        if self._result is None:
            if self._end is not None:
                self._end.synchronize()
            h = self._host
            # the delta transform reads the batch's normalised state: the host copy
            batch = attrs.evolve(self._batch, state=h["state"])
            actions = self._policy.postprocess(h["actions"], batch)
            # pageable copies: records live as long as the rollout, pinned
            # buffers go back to the allocator's pool
            chain = h["chain"].clone()
            logp = h["log_prob"]
            step = h.get("stochastic_step")
            records = [
                {
                    "chain": chain[i],
                    "log_prob": float(logp[i]),
                    "stochastic_step": None if step is None else int(step[i]),
                }
                for i in range(len(batch))
            ]
            if self._start is not None and self._end is not None:
                self.device_s = self._start.elapsed_time(self._end) / 1000.0
            self._result = PolicyOutput(actions, records)
            self._batch = self._host = None  # type: ignore[assignment]
        return self._result
