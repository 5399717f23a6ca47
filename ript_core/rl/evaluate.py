"""Success rate per task, with a Wilson 95 % confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from ript_core.rl.contexts import Context
from ript_core.rollout.runner import EpisodeRequest, Rollout, RolloutRunner


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@attrs.frozen
class TaskResult:
    task: str
    successes: int
    episodes: int

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)


@attrs.frozen
class EvalResult:
    tasks: list[TaskResult]
    rollouts: list[Rollout] = attrs.field(repr=False, eq=False)

    @property
    def successes(self) -> int:
        return sum(t.successes for t in self.tasks)

    @property
    def episodes(self) -> int:
        return sum(t.episodes for t in self.tasks)

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @classmethod
    def merged(cls, parts: Sequence[Sequence[TaskResult]]) -> EvalResult:
        """Per-task totals over several evaluations (ranks'), without their rollouts."""
        totals: dict[str, list[int]] = {}
        for part in parts:
            for t in part:
                counts = totals.setdefault(t.task, [0, 0])
                counts[0] += t.successes
                counts[1] += t.episodes
        return cls([TaskResult(t, s, n) for t, (s, n) in sorted(totals.items())], [])

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        out = {f"{prefix}success_rate": self.rate}
        out.update({f"{prefix}{t.task}/success_rate": t.rate for t in self.tasks})
        return out

    def table(self) -> str:
        lines = [f"{'task':28s} {'success':>9s}  95% CI"]
        for t in self.tasks:
            lo, hi = t.ci95
            lines.append(f"{t.task:28s} {t.successes:4d}/{t.episodes:<4d}  [{lo:.2f}, {hi:.2f}]")
        lo, hi = wilson_interval(self.successes, self.episodes)
        lines.append(
            f"{'all':28s} {self.successes:4d}/{self.episodes:<4d}  [{lo:.2f}, {hi:.2f}]  = {self.rate:.1%}"
        )
        return "\n".join(lines)


def evaluate(
    runner: RolloutRunner, contexts: Sequence[Context], episodes_per_context: int, seed: int
) -> EvalResult:
    """Run every context ``episodes_per_context`` times with fixed seeds."""
    requests = [
        EpisodeRequest(n, c.backend, c.task, c.init_state, seed=seed * 100_003 + n)
        for n, c in enumerate(c for c in contexts for _ in range(episodes_per_context))
    ]
    rollouts, _ = runner.run(requests)
    per_task: dict[str, list[bool]] = {}
    for r in rollouts:
        per_task.setdefault(r.request.task, []).append(r.success)
    tasks = [TaskResult(t, sum(v), len(v)) for t, v in sorted(per_task.items())]
    return EvalResult(tasks, rollouts)
