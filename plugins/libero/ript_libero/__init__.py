"""ript-core's LIBERO backend (``libero``): the five LIBERO suites on the real
simulator, with the reference PI0 LIBERO observation/action conventions.

Install with ``pip install "ript-core[libero]"``; see ``docs/backends/libero.md``.
"""

from __future__ import annotations

__all__ = ["NAME"]

NAME = "libero"
