"""ript-core's ManiSkill3 backend (``maniskill``): table-top Panda tasks on
ManiSkill3's CPU simulation, rendered with SAPIEN (Vulkan), with scripted
experts of our own for BC warm starts.

Install with ``pip install "ript-core[maniskill]"`` plus a Vulkan driver; see
``docs/backends/maniskill.md``.
"""

from __future__ import annotations

__all__ = ["NAME"]

NAME = "maniskill"
