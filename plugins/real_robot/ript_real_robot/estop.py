"""The emergency stop: Ctrl-C (SIGINT, the keyboard's stop) or SIGTERM stops
motion at once, then unwinds the run; nothing moves again until a new run.

The signal handler calls the driver's ``stop`` before anything else (Python
runs handlers in the main thread between bytecodes, so that happens before
the interrupted code gets another instruction), records the event and raises
:class:`EmergencyStopped`. Finished episodes are already on disk, so
``ript train ... --resume`` continues from them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from ript_real_robot.driver import RobotDriver
from ript_real_robot.safety import SafetyWrapper
from ript_real_robot.safety_log import SafetyLog


class EmergencyStopped(KeyboardInterrupt):
    """The emergency stop was pressed: motion stopped, the run unwinds.
    A ``KeyboardInterrupt``, so that nothing on the way swallows it."""


class EStop:
    """The stop button: :meth:`trigger` stops every registered driver at once."""

    def __init__(self, log: SafetyLog) -> None:
        self.log = log
        self.engaged = threading.Event()
        self.reason = ""
        self._stops: list[Callable[[], None]] = []
        self._previous: dict[int, Any] = {}

    def attach(self, driver: RobotDriver) -> None:
        self._stops.append(driver.stop)

    def trigger(self, reason: str) -> None:
        self.engaged.set()
        self.reason = reason
        for stop in self._stops:
            stop()
        self.log.record("estop", reason)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.trigger(f"signal {signal.Signals(signum).name}")
        raise EmergencyStopped(f"emergency stop ({self.reason}): robot stopped")

    def install(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> bool:
        """Handle ``signals`` (only possible in the main thread; False elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if self._previous:  # installed already: keep the handlers it replaced
            return True
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return True

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class EStopGuard(SafetyWrapper):
    """Refuses every action once the emergency stop is engaged."""

    kind = "estop"

    def __init__(self, inner: RobotDriver, log: SafetyLog, estop: EStop) -> None:
        super().__init__(inner, log)
        self.estop = estop
        estop.attach(inner)

    def send(self, action):
        if self.estop.engaged.is_set():
            raise EmergencyStopped(f"emergency stop engaged ({self.estop.reason}): not moving")
        self.inner.send(action)
