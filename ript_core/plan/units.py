"""Units of the planner's messages: decimal GB (like GPU spec sheets and the CLI
flags), parameter counts and durations in the unit a reader expects."""

from __future__ import annotations

from ript_core.envs.spec import GB  # one definition: backend footprints count in it too

__all__ = ["GB", "fmt_count", "fmt_duration", "fmt_gb"]


def fmt_gb(n_bytes: float) -> str:
    """Bytes as decimal GB with enough digits for both 7 GB and 2 MB numbers
    (kB below 0.1 MB, so a tiny model's caches do not read as 0.0 MB)."""
    if n_bytes == 0:
        return "0"
    gb = n_bytes / GB
    if gb >= 10:
        return f"{gb:.1f} GB"
    if gb >= 0.1:
        return f"{gb:.2f} GB"
    if n_bytes >= 1e5:
        return f"{n_bytes / 1e6:.1f} MB"
    return f"{n_bytes / 1e3:.1f} kB"


def fmt_count(n: float) -> str:
    """A parameter count: 284k, 56.3M, 3.29B."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def fmt_duration(seconds: float) -> str:
    """A duration in ms below 10 s, in s below 10 min, else in min."""
    if seconds < 10:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 600:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min"
