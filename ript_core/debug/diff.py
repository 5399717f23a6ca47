"""Compare two recordings stage by stage and find the first divergence.

Stages are walked in recording A's order (pipeline order), so the first
stage beyond tolerance is where the two pipelines start to disagree; every
later stage inherits the difference. A stage passes when every element
satisfies ``|a - b| <= atol + rtol * |b|`` (numpy's ``allclose`` rule),
computed in float64.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs
import numpy as np

from ript_core.debug.mapping import StageMapping
from ript_core.debug.recording import Recording

Status = Literal["ok", "DIVERGED", "shape", "missing", "ignored"]


@attrs.frozen
class StageDiff:
    name: str
    other_name: str
    status: Status
    shape: tuple[int, ...] | None = None
    other_shape: tuple[int, ...] | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    atol: float | None = None
    rtol: float | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("DIVERGED", "shape")


@attrs.frozen
class DiffReport:
    rows: tuple[StageDiff, ...]

    @property
    def compared(self) -> list[StageDiff]:
        return [r for r in self.rows if r.status in ("ok", "DIVERGED", "shape")]

    @property
    def first_divergence(self) -> StageDiff | None:
        return next((r for r in self.rows if r.failed), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None and bool(self.compared)


def _align(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Same shape, or the same after dropping size-1 axes (a batch axis of 1
    that one pipeline keeps and the other does not)."""
    if a.shape == b.shape:
        return a, b, ""
    if a.squeeze().shape == b.squeeze().shape:
        return a.squeeze(), b.squeeze(), "size-1 axes squeezed"
    return None


def compare_arrays(a: np.ndarray, b: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """``(max_abs, max_rel, |a-b|, |b|)`` in float64; NaNs count as infinite error
    unless both sides are NaN at the same place."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    err = np.abs(a64 - b64)
    both_nan = np.isnan(a64) & np.isnan(b64)
    err = np.where(both_nan, 0.0, np.where(np.isnan(err), np.inf, err))
    ref = np.abs(b64)
    if err.size == 0:
        return 0.0, 0.0, err, ref
    rel = err / np.maximum(ref, np.finfo(np.float64).tiny)
    rel = np.where(err == 0, 0.0, rel)
    return float(err.max()), float(rel.max()), err, ref


def diff_recordings(
    a: Recording,
    b: Recording,
    mapping: StageMapping | None = None,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    stages: Iterable[str] | None = None,
) -> DiffReport:
    """Compare A's stages (in A's order, optionally only those matching the
    ``stages`` globs) with their counterparts in B."""
    import fnmatch

    mapping = mapping or StageMapping.identity()
    patterns = list(stages) if stages else None
    rows: list[StageDiff] = []
    for name in a.names:
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        other, transpose = mapping.target(name)
        if mapping.is_ignored(name):
            rows.append(StageDiff(name, other, "ignored"))
            continue
        if other not in b:
            rows.append(StageDiff(name, other, "missing", shape=a[name].shape))
            continue
        va, vb = a[name], b[other]
        note = ""
        if transpose is not None:
            if len(transpose) != vb.ndim:
                raise ValueError(
                    f"mapping transposes {other!r} with {list(transpose)} but it has "
                    f"{vb.ndim} axes (shape {vb.shape})"
                )
            vb = np.transpose(vb, transpose)
            note = f"B transposed {list(transpose)}"
        s_atol, s_rtol = mapping.tolerance(name, atol, rtol)
        aligned = _align(va, vb)
        if aligned is None:
            rows.append(
                StageDiff(
                    name,
                    other,
                    "shape",
                    va.shape,
                    vb.shape,
                    atol=s_atol,
                    rtol=s_rtol,
                    note="shapes differ",
                )
            )
            continue
        xa, xb, squeeze_note = aligned
        note = "; ".join(n for n in (note, squeeze_note) if n)
        max_abs, max_rel, err, ref = compare_arrays(xa, xb)
        within = bool(np.all(err <= s_atol + s_rtol * ref))
        rows.append(
            StageDiff(
                name,
                other,
                "ok" if within else "DIVERGED",
                va.shape,
                vb.shape,
                max_abs,
                max_rel,
                s_atol,
                s_rtol,
                note,
            )
        )
    return DiffReport(tuple(rows))
