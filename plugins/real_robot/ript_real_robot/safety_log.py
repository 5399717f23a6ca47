"""Every safety intervention, with its reason, counted."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import attrs

log = logging.getLogger("ript_real_robot.safety")


@attrs.frozen
class SafetyEvent:
    """One intervention: which layer (``kind``), why, and what it changed."""

    kind: str
    reason: str
    time: float
    detail: dict[str, Any] = attrs.Factory(dict)


class SafetyLog:
    """Shared by every layer of a driver stack (and its threads). ``events``
    since the last :meth:`take` (the env takes them into each episode's
    record); ``counts`` per kind over the log's life (the run's metrics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[SafetyEvent] = []
        self.counts: Counter[str] = Counter()

    def record(self, kind: str, reason: str, **detail: Any) -> SafetyEvent:
        event = SafetyEvent(kind, reason, time.time(), detail)
        with self._lock:
            self.events.append(event)
            self.counts[kind] += 1
        log.warning("safety %s: %s", kind, reason)
        return event

    def take(self) -> list[SafetyEvent]:
        with self._lock:
            events, self.events = self.events, []
        return events

    def metrics(self, prefix: str = "safety/") -> dict[str, int]:
        with self._lock:
            return {f"{prefix}{k}": v for k, v in sorted(self.counts.items())}
