"""Byte units of the planner: decimal GB, like GPU spec sheets and the CLI flags."""

from __future__ import annotations

from ript_core.envs.spec import GB  # one definition: backend footprints count in it too

__all__ = ["GB", "fmt_gb"]


def fmt_gb(n_bytes: float) -> str:
    """Bytes as decimal GB with enough digits for both 7 GB and 2 MB numbers."""
    gb = n_bytes / GB
    if gb >= 10:
        return f"{gb:.1f} GB"
    if gb >= 0.1:
        return f"{gb:.2f} GB"
    return f"{n_bytes / 1e6:.1f} MB"
