"""The rollout schedule: env worker groups that step while the policy serves another.

The runner deals its workers into G groups (worker i -> group i % G) and
serves them round-robin; this module predicts the steady state of every G
from the env's chunk time and the policy's :class:`~ript_core.plan.cost.InferenceCost`
and picks the G to use (docs/planner.md, "Rollout schedule").
"""

from __future__ import annotations

import math

import attrs

from ript_core.plan.cost import InferenceCost

#: A larger G must beat the best smaller one by this much to be chosen: the
#: cost model is rough, and every extra group means smaller batches and more
#: policy calls for the same work.
PIPELINE_MIN_GAIN = 0.05


def group_sizes(n_env: int, groups: int) -> tuple[int, ...]:
    """Workers per group as the runner deals them out (worker i -> group i % G)."""
    return tuple(len(range(g, n_env, groups)) for g in range(groups))


def round_batch_sizes(n_env: int, groups: int, max_batch: int | None = None) -> tuple[int, ...]:
    """The batch of every policy call in one full round of the runner: G
    groups (:func:`group_sizes`), each served in calls of at most
    ``max_batch``. The runner announces these to its policy
    (``expect_batch_sizes``) and the planner costs them unpadded."""
    out: set[int] = set()
    for n in group_sizes(n_env, min(groups, n_env)):
        cap = max_batch or n
        full, rest = divmod(n, cap)
        if full:
            out.add(cap)
        if rest:
            out.add(rest)
    return tuple(sorted(out))


@attrs.frozen
class PipelineOption:
    """The predicted steady state of one group count G.

    ``period_s``: time between two decisions of the same env. ``policy_util``,
    ``env_util``: fraction of the period the policy, and each env worker, is
    busy. ``steps_per_s``: env steps per second over all workers.
    ``wave_s``: with D decisions per episode known, one wave of episodes
    including the ramp (the first round of inferences before every env
    steps, the last chunk after the last one); ``steps_per_s`` then counts it.
    """

    groups: int
    group_sizes: tuple[int, ...]
    calls_per_group: int
    policy_s: float  # policy time per period, all groups
    period_s: float
    policy_util: float
    env_util: float
    steps_per_s: float
    wave_s: float | None = None

    @property
    def cost_s(self) -> float:
        """What the planner minimises: the wave if known, else the period."""
        return self.period_s if self.wave_s is None else self.wave_s


def pipeline_option(
    n_env: int,
    groups: int,
    env_chunk_s: float,
    cost: InferenceCost,
    *,
    inference_batch: int | None = None,
    replan_every: int = 5,
    decisions: int | None = None,
) -> PipelineOption:
    """Steady-state period of the round-robin schedule with G groups.

    Group g's policy time ``P_g`` is its calls (batches of at most
    ``inference_batch``); its envs step ``E`` = one chunk while the policy
    serves the other groups, so the period is
    ``T = max(Σ_g P_g, max_g (P_g + E))``: policy-bound when the other groups'
    inference covers a chunk, env-bound otherwise. G = 1 gives lock-step,
    ``T = P + E``. With ``decisions`` = D per episode, a wave of episodes
    costs ``Σ_g P_g + (D − 1)·T + E``: short episodes pay the ramp.
    """
    if n_env < 1 or groups < 1:
        raise ValueError(f"need n_env >= 1 and groups >= 1, got {n_env}, {groups}")
    groups = min(groups, n_env)
    sizes = group_sizes(n_env, groups)
    cap = inference_batch or max(sizes)
    # the runner announces its calls' sizes: a bucketing policy runs them unpadded
    announced = round_batch_sizes(n_env, groups, inference_batch)
    per_group = []
    for n in sizes:
        full, rest = divmod(n, cap)
        per_group.append(
            full * cost.seconds(cap, announced) + (cost.seconds(rest, announced) if rest else 0.0)
        )
    policy = sum(per_group)
    period = max(policy, max(pg + env_chunk_s for pg in per_group))
    wave = None if decisions is None else policy + (decisions - 1) * period + env_chunk_s
    steps = n_env * replan_every * (1 if wave is None else decisions)
    return PipelineOption(
        groups=groups,
        group_sizes=sizes,
        calls_per_group=math.ceil(max(sizes) / cap),
        policy_s=policy,
        period_s=period,
        policy_util=policy / period if period else 0.0,
        env_util=env_chunk_s / period if period else 0.0,
        steps_per_s=steps / (period if wave is None else wave) if period else 0.0,
        wave_s=wave,
    )


@attrs.frozen
class PipelinePlan:
    """The chosen G, the env and inference costs it rests on, every G considered."""

    groups: int
    env_chunk_s: float
    cost: InferenceCost
    options: tuple[PipelineOption, ...]
    overridden: bool = False

    @property
    def chosen(self) -> PipelineOption:
        return next(o for o in self.options if o.groups == self.groups)

    @property
    def lockstep(self) -> PipelineOption:
        return self.options[0]

    @property
    def policy_util(self) -> float:
        return self.chosen.policy_util

    @property
    def env_util(self) -> float:
        return self.chosen.env_util

    @property
    def speedup(self) -> float:
        return self.lockstep.cost_s / self.chosen.cost_s if self.chosen.cost_s else 1.0


def choose_pipeline(
    n_env: int,
    env_chunk_s: float,
    cost: InferenceCost,
    *,
    inference_batch: int | None = None,
    replan_every: int = 5,
    max_groups: int = 8,
    override: int | None = None,
    decisions: int | None = None,
) -> PipelinePlan:
    """The G (1..``max_groups``, at most one group per env) with the shortest
    predicted period — or wave of episodes, when ``decisions`` per episode
    are known; a larger G must win by :data:`PIPELINE_MIN_GAIN`."""
    top = max(1, min(n_env, max(max_groups, override or 1)))
    options = tuple(
        pipeline_option(
            n_env,
            g,
            env_chunk_s,
            cost,
            inference_batch=inference_batch,
            replan_every=replan_every,
            decisions=decisions,
        )
        for g in range(1, top + 1)
    )
    best = options[0]
    for o in options[1:]:
        if o.cost_s < best.cost_s * (1 - PIPELINE_MIN_GAIN):
            best = o
    if override is not None:
        return PipelinePlan(min(override, top), env_chunk_s, cost, options, overridden=True)
    return PipelinePlan(best.groups, env_chunk_s, cost, options)
