"""Progress for long loops: a tqdm bar on a terminal, plain periodic lines
elsewhere.

Written here because tqdm has no plain-line mode: redirected to a file it
keeps writing carriage-return updates (a demo's log grew to megabytes). Off
a terminal this prints one ``desc: n/total (pct) elapsed, postfix`` line
every ``every_s`` seconds and one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO


class PlainProgress:
    """The part of tqdm's interface the trainer uses, as plain lines."""

    def __init__(
        self,
        iterable: Iterable[Any],
        desc: str,
        total: int | None = None,
        initial: int = 0,
        every_s: float = 30.0,
        file: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else _len(iterable)
        self.n = initial
        self.every_s = every_s
        self.file = file
        self.clock = clock
        self.postfix = ""

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def __iter__(self) -> Iterator[Any]:
        start = last = self.clock()
        for item in self.iterable:
            yield item
            self.n += 1
            now = self.clock()
            if now - last >= self.every_s:
                self._line(now - start)
                last = now
        self._line(self.clock() - start)

    def _line(self, elapsed: float) -> None:
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({self.n / self.total:.0%})" if self.total else ""
        minutes, seconds = divmod(int(elapsed), 60)
        tail = f", {self.postfix}" if self.postfix else ""
        out = self.file or sys.stdout
        print(f"{self.desc}: {done}{pct} {minutes}:{seconds:02d}{tail}", file=out, flush=True)


def progress(
    iterable: Iterable[Any],
    desc: str,
    enabled: bool,
    file: TextIO | None = None,
    **tqdm_kwargs: Any,
) -> Any:
    """A tqdm bar when ``file`` (stderr, where tqdm writes) is a terminal,
    :class:`PlainProgress` lines on stdout otherwise, nothing when disabled."""
    stream = file or sys.stderr
    if enabled and not stream.isatty():
        total = tqdm_kwargs.get("total")
        return PlainProgress(iterable, desc, total, tqdm_kwargs.get("initial", 0), file=file)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled, file=file, **tqdm_kwargs)


def print_above_progress(msg: str) -> None:
    """``print(msg)`` on stdout, on lines of its own: a live tqdm bar (on
    stderr, sharing the terminal) is cleared first and redrawn below, so a
    mid-run evaluation table never starts on the bar's line."""
    from tqdm import tqdm

    with tqdm.external_write_mode():
        print(msg, flush=True)


def _len(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None
