"""A plan's result: the chosen settings, their predicted memory per phase, and why."""

from __future__ import annotations

import attrs

from ript_core.plan.footprint import Strategy
from ript_core.plan.schedule import PipelinePlan
from ript_core.plan.units import fmt_gb

PLAN_FIELDS = (
    "n_env_workers",
    "inference_batch",
    "train_micro_batch",
    "grad_accum",
    "activation_checkpointing",
    "pipeline_groups",
)


@attrs.define
class ParallelPlan:
    """The chosen parallel strategy, its predicted memory and why.

    ``peak_bytes`` holds the predicted device peak per phase (``rollout``,
    ``update``); on a CPU-only machine it includes the env workers' RAM,
    which shares the pool. ``breakdown`` itemises each phase (``weights`` is
    the single model copy, ``env_workers`` is ``n_env_workers × env RAM``).
    ``host_bytes`` is the CPU RAM of the env workers, ``host_usable_bytes``
    what the host offers them (after the margin and the main process).
    """

    n_env_workers: int
    inference_batch: int
    train_micro_batch: int
    grad_accum: int
    activation_checkpointing: bool
    train_batch: int
    peak_bytes: dict[str, int]
    breakdown: dict[str, dict[str, int]]
    usable_bytes: int
    host_bytes: int
    host_usable_bytes: int
    fits: bool
    reasons: list[str]
    strategy: Strategy
    overridden: tuple[str, ...] = ()
    pipeline: PipelinePlan | None = None
    #: when the plan does not fit: the strategy that would (see recommend_strategy)
    recommended_strategy: Strategy | None = None

    @property
    def pipeline_groups(self) -> int:
        """G for ``RolloutRunner(pipeline_groups=...)`` (1: lock-step)."""
        return self.pipeline.groups if self.pipeline is not None else 1

    def settings(self) -> dict[str, int | bool]:
        """The fields a trainer applies (user overrides already folded in)."""
        return {f: getattr(self, f) for f in PLAN_FIELDS}

    def summary(self) -> str:
        """Multi-line plain text for logs."""
        lines = [
            f"plan ({self.strategy}): {self.n_env_workers} env workers, inference batch "
            f"{self.inference_batch}, micro-batch {self.train_micro_batch} × {self.grad_accum} "
            f"accumulation, activation checkpointing "
            f"{'on' if self.activation_checkpointing else 'off'}",
            *(
                f"  {phase}: predicted peak {fmt_gb(b)} of {fmt_gb(self.usable_bytes)} usable"
                for phase, b in self.peak_bytes.items()
            ),
            f"  fits: {self.fits}",
            *(
                [
                    f"  rollout schedule: {self.pipeline.groups} group(s); predicted policy "
                    f"busy {self.pipeline.policy_util:.0%}, env workers busy "
                    f"{self.pipeline.env_util:.0%}"
                ]
                if self.pipeline is not None
                else []
            ),
            *(f"  - {r}" for r in self.reasons),
        ]
        return "\n".join(lines)
