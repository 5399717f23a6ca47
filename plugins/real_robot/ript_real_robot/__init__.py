"""ript-core's real-robot backend (``real_robot``): RIPT on a physical arm.

A robot is a :class:`~ript_real_robot.driver.RobotDriver` (what a user
implements for their arm; shipped: the lerobot-surface adapter, the network
driver, the SO-101 digital twin) behind an always-on stack of safety wrappers,
run one episode at a time with an operator who sets up each scene and labels
each outcome. See ``docs/backends/real_robot.md``.
"""

from __future__ import annotations

__all__ = ["NAME"]

NAME = "real_robot"
