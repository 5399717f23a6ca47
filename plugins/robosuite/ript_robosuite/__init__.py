"""ript-core's robosuite backend (``robosuite``): robosuite's single-arm Panda
tasks (Lift, Stack, PickPlaceCan, NutAssemblySquare, Door) with language
instructions, reproducible init states and scripted experts.

Install with ``pip install "ript-core[robosuite]"``; see ``docs/backends/robosuite.md``.
"""

from __future__ import annotations

__all__ = ["NAME"]

NAME = "robosuite"
