"""The operator: the person who sets each scene up and labels each outcome.

Prompts go to ``output``, answers come line by line from ``input`` (the
terminal by default; tests pass scripted streams). An operator who cannot
answer (end of input) stops the run with a clear error instead of a guess.
"""

from __future__ import annotations

import sys
from typing import IO

#: the operator's verdict on an episode
SUCCESS, FAILURE, TOOK_OVER = "success", "failure", "took_over"
_ANSWERS = {"y": SUCCESS, "yes": SUCCESS, "n": FAILURE, "no": FAILURE, "t": TOOK_OVER}


class OperatorGone(RuntimeError):
    """The operator's input ended: nobody can confirm a scene or label an episode."""


class Operator:
    def __init__(self, input: IO[str] | None = None, output: IO[str] | None = None) -> None:
        self.input = input
        self.output = output

    def _ask(self, prompt: str) -> str:
        out = self.output or sys.stderr
        out.write(prompt)
        out.flush()
        line = (self.input or sys.stdin).readline()
        if not line:
            raise OperatorGone(
                "the operator's input ended (stdin closed) while asked: "
                f"{prompt.strip()!r}; run with an operator at the terminal or script the answers"
            )
        return line.strip().lower()

    def confirm_scene(self, task: str, scene: str, note: str = "") -> None:
        """Wait until the operator has set up ``scene`` (Enter)."""
        extra = f" ({note})" if note else ""
        self._ask(f"[robot] {task}: set up scene {scene!r}{extra}, then press Enter: ")

    def label(self, task: str, scene: str) -> str:
        """:data:`SUCCESS`, :data:`FAILURE` or :data:`TOOK_OVER` (asked again until valid)."""
        while True:
            answer = self._ask(
                f"[robot] {task} / {scene}: success? [y]es / [n]o / [t]ook over (discard): "
            )
            if answer in _ANSWERS:
                return _ANSWERS[answer]
            (self.output or sys.stderr).write(f"  {answer!r}: answer y, n or t\n")
