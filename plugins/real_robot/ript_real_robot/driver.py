"""The driver interface: what a user implements for their arm.

A driver reads the cameras and the proprio state, sends one control tick's
action, stops motion, and reports its status. Everything else (safety,
episodes, the operator, the policy) is built on these few calls, so a new arm
needs only a driver. :class:`DriverWrapper` is the base of every layer put
around a driver (the safety wrappers, dry run): it forwards every call.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

#: what an action means: an end-effector translation delta (+ gripper), or
#: joint position targets (+ gripper), one control tick each
ACTION_KINDS = ("ee_delta", "joint_position")


@attrs.frozen
class RobotInfo:
    """What a connected robot is: its cameras, state and action layout, rate.

    ``joints``: the slice ``(start, stop)`` of the state that holds the arm's
    joint positions (radians); ``ee``: the slice holding the end-effector xyz
    (metres), or None when the robot does not report it. ``action_kind``
    (:data:`ACTION_KINDS`): for ``ee_delta`` the first three action dims are a
    translation of ``ee_delta_scale`` metres per unit; for
    ``joint_position`` the first ``joints`` dims are joint targets. Any
    further dims (the gripper) are absolute commands."""

    name: str
    cameras: tuple[str, ...]
    state_dim: int
    action_dim: int
    control_hz: float
    action_kind: str
    joints: tuple[int, int]
    ee: tuple[int, int] | None = None
    ee_delta_scale: float = 1.0

    def __attrs_post_init__(self) -> None:
        if self.action_kind not in ACTION_KINDS:
            raise ValueError(f"action_kind {self.action_kind!r} is not one of {ACTION_KINDS}")
        if self.control_hz <= 0:
            raise ValueError(f"control_hz must be > 0, got {self.control_hz}")

    @property
    def n_joints(self) -> int:
        return self.joints[1] - self.joints[0]

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RobotInfo:
        d = dict(d)
        d["cameras"] = tuple(d["cameras"])
        d["joints"] = tuple(d["joints"])
        d["ee"] = tuple(d["ee"]) if d.get("ee") is not None else None
        return cls(**d)


@attrs.frozen
class RobotReading:
    """One read of the robot: ``images`` camera -> HxWx3 uint8, ``state`` 1-D
    float, and ``success`` when the robot has a success detector (a digital
    twin's simulator), else None."""

    images: dict[str, np.ndarray]
    state: np.ndarray
    success: bool | None = None


class RobotLinkError(ConnectionError):
    """The link to the robot broke (a network driver's connection, a serial
    port): the robot has been told to stop where that is possible."""


class RobotDriver:
    """Subclass and implement :meth:`connect`, :meth:`read`, :meth:`send`,
    :meth:`stop`; :meth:`status`, :meth:`prepare_scene` and :meth:`close` are
    optional.

    :meth:`stop` must halt motion at once, be idempotent and be safe to call
    from another thread or a signal handler (the watchdog and the emergency
    stop call it)."""

    info: RobotInfo

    def connect(self) -> RobotInfo:
        """Open the robot; returns (and keeps in ``self.info``) what it is."""
        raise NotImplementedError

    def read(self) -> RobotReading:
        raise NotImplementedError

    def send(self, action: np.ndarray) -> None:
        """Command one control tick (layout: ``info.action_kind``)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {"driver": type(self).__name__}

    def prepare_scene(self, scene: str, seed: int) -> bool:
        """Put the scene ``scene`` in place if the robot can do it alone (a
        digital twin resets its simulator from ``seed``); False: an operator
        must set it up."""
        return False

    def close(self) -> None:
        pass


class DriverWrapper(RobotDriver):
    """A layer around a driver; forwards everything to ``inner``."""

    def __init__(self, inner: RobotDriver) -> None:
        self.inner = inner

    @property
    def info(self) -> RobotInfo:  # type: ignore[override]
        return self.inner.info

    def connect(self) -> RobotInfo:
        return self.inner.connect()

    def read(self) -> RobotReading:
        return self.inner.read()

    def send(self, action: np.ndarray) -> None:
        self.inner.send(action)

    def stop(self) -> None:
        self.inner.stop()

    def status(self) -> dict[str, Any]:
        return self.inner.status()

    def prepare_scene(self, scene: str, seed: int) -> bool:
        return self.inner.prepare_scene(scene, seed)

    def close(self) -> None:
        self.inner.close()

    def innermost(self) -> RobotDriver:
        d: RobotDriver = self
        while isinstance(d, DriverWrapper):
            d = d.inner
        return d
