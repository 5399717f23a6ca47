"""Which contexts (task, init state) to roll out next.

RIPT's dynamic rollout sampling needs two things from here: a stream of
contexts, and a memory of how each context went. A context whose last
``solved_window`` groups were all successes is "reliably solved": it carries
no learning signal any more and is sampled ``solved_weight`` times as often
as the others (not never: the policy could forget it).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
import numpy as np


@attrs.frozen(order=True)
class Context:
    backend: str
    task: str
    init_state: int

    def __str__(self) -> str:
        return f"{self.backend}/{self.task}#{self.init_state}"


class ContextSampler:
    def __init__(
        self,
        contexts: list[Context],
        seed: int,
        *,
        solved_window: int = 2,
        solved_weight: float = 0.1,
        history_len: int = 8,
    ) -> None:
        if not contexts:
            raise ValueError("the context sampler needs at least one (task, init state)")
        self.contexts = sorted(set(contexts))
        self.solved_window = solved_window
        self.solved_weight = solved_weight
        self.history: dict[Context, deque[float]] = {
            c: deque(maxlen=history_len) for c in self.contexts
        }
        self.rng = np.random.default_rng(seed)

    def weights(self) -> np.ndarray:
        w = np.array([self.solved_weight if self.is_solved(c) else 1.0 for c in self.contexts])
        return w / w.sum()

    def is_solved(self, context: Context) -> bool:
        h = self.history[context]
        return len(h) >= self.solved_window and all(
            rate == 1.0 for rate in list(h)[-self.solved_window :]
        )

    def sample(self, n: int) -> list[Context]:
        """``n`` distinct contexts (fewer if there are fewer), weighted as above."""
        n = min(n, len(self.contexts))
        idx = self.rng.choice(len(self.contexts), size=n, replace=False, p=self.weights())
        return [self.contexts[i] for i in idx]

    def record(self, context: Context, rewards: list[float]) -> None:
        self.history[context].append(float(np.mean(rewards)))

    # -- checkpointing ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "history": [[attrs.astuple(c), list(h)] for c, h in self.history.items() if h],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        for c in self.history.values():
            c.clear()
        for ctx, values in state["history"]:
            self.history[Context(*ctx)].extend(values)
