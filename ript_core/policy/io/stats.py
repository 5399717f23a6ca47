"""Normalisation statistics that travel with a checkpoint.

A checkpoint is only meaningful together with the statistics it was trained
with (parity checklist A2): the same weights with other stats move actions by
centimetres. So the stats, the mode (z-score or quantile) and the epsilon are
one object, saved beside the weights and loaded with them.

Two conventions, recorded with the stats (``convention``):

- ``openpi`` (``transforms.py``): z-score ``(x - mean) / (std + eps)``, inverse
  ``y * (std + eps) + mean``; quantile ``(x - q01) / (q99 - q01 + eps) * 2 - 1``,
  inverse the exact algebraic inverse; ``eps=1e-6``.
- ``lerobot`` (``normalize_processor.py``): z-score ``(x - mean) / (std + eps)``
  but inverse ``y * std + mean`` (no eps on the way back); quantile with
  ``q99 - q01`` replaced by ``eps`` only where the two are equal; ``eps=1e-8``.

The arithmetic is float64 (the stats are float64, as openpi's numpy stats);
the result is cast once at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch

NormMode = Literal["mean_std", "quantile"]
NormConvention = Literal["openpi", "lerobot"]
STATS_FILE = "stats.json"


def _floats(values: Any) -> list[float] | None:
    if values is None:
        return None
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


@attrs.frozen
class FeatureStats:
    """Per-dimension statistics of one feature (state or actions)."""

    mean: list[float] = attrs.field(converter=_floats)
    std: list[float] = attrs.field(converter=_floats)
    q01: list[float] | None = attrs.field(default=None, converter=_floats)
    q99: list[float] | None = attrs.field(default=None, converter=_floats)

    def __attrs_post_init__(self) -> None:
        n = len(self.mean)
        for name in ("std", "q01", "q99"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"stats {name} has {len(value)} dims, mean has {n}")

    @property
    def dim(self) -> int:
        return len(self.mean)

    @classmethod
    def identity(cls, dim: int) -> FeatureStats:
        return cls(mean=[0.0] * dim, std=[1.0] * dim)

    @classmethod
    def fit(cls, values: np.ndarray | torch.Tensor) -> FeatureStats:
        """Stats of ``values [..., dim]`` over every leading axis.

        A feature that is constant in the data (std ~ 0, e.g. a gripper that
        never closes before a demo ends) gets std 1 and a widened quantile
        range: dividing by eps would turn the first unseen value into ~1e6.
        """
        x = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
        std = x.std(0)
        q01, q99 = np.quantile(x, 0.01, axis=0), np.quantile(x, 0.99, axis=0)
        constant = std < 1e-6
        std = np.where(constant, 1.0, std)
        q01, q99 = np.where(constant, q01 - 1.0, q01), np.where(constant, q99 + 1.0, q99)
        return cls(mean=x.mean(0), std=std, q01=q01, q99=q99)


@attrs.frozen
class NormStats:
    """State and action statistics plus how to apply them."""

    state: FeatureStats
    actions: FeatureStats
    mode: NormMode = "mean_std"
    eps: float = 1e-6
    # Where eps enters (see the module docstring): the same weights with the
    # other convention move actions by eps-sized amounts on tiny-std dims.
    convention: NormConvention = "openpi"
    # Where the stats came from ("identity", "fit", "openpi:<path>", ...): a
    # run log then says which normalisation it used.
    source: str = ""

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("mean_std", "quantile"):
            raise ValueError(
                f"normalisation mode must be 'mean_std' or 'quantile', got {self.mode!r}"
            )
        if self.convention not in ("openpi", "lerobot"):
            raise ValueError(
                f"normalisation convention must be 'openpi' or 'lerobot', got {self.convention!r}"
            )
        if self.mode == "quantile":
            for name, feat in (("state", self.state), ("actions", self.actions)):
                if feat.q01 is None or feat.q99 is None:
                    raise ValueError(f"quantile normalisation needs {name}.q01 and {name}.q99")

    @classmethod
    def identity(cls, state_dim: int, action_dim: int) -> NormStats:
        """Mean 0, std 1, eps 0: normalisation is exactly the identity. Used by
        random-init presets until the trainer fits stats from demonstrations."""
        return cls(
            state=FeatureStats.identity(state_dim),
            actions=FeatureStats.identity(action_dim),
            eps=0.0,
            source="identity",
        )

    @classmethod
    def fit(
        cls,
        states: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        mode: NormMode = "mean_std",
        eps: float = 1e-6,
    ) -> NormStats:
        return cls(
            state=FeatureStats.fit(states),
            actions=FeatureStats.fit(actions),
            mode=mode,
            eps=eps,
            source="fit",
        )

    # ---- application ---------------------------------------------------------

    def _params(
        self, feature: str, like: torch.Tensor, inverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(offset, scale) such that normalised = (x - offset) / scale."""
        feat: FeatureStats = getattr(self, feature)
        kw = {"dtype": torch.float64, "device": like.device}
        if self.mode == "mean_std":
            std = torch.tensor(feat.std, **kw)
            if self.convention == "lerobot" and inverse:
                return torch.tensor(feat.mean, **kw), std  # lerobot: y * std + mean
            return torch.tensor(feat.mean, **kw), std + self.eps
        q01, q99 = torch.tensor(feat.q01, **kw), torch.tensor(feat.q99, **kw)
        if self.convention == "lerobot":
            span = q99 - q01
            return q01, torch.where(span == 0, torch.full_like(span, self.eps), span) / 2.0
        return q01, (q99 - q01 + self.eps) / 2.0

    def normalize(
        self,
        x: torch.Tensor,
        feature: Literal["state", "actions"],
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Normalise the last axis of ``x`` (float64 arithmetic, ``dtype`` out)."""
        offset, scale = self._params(feature, x)
        self._check_dim(x, offset, feature)
        y = (x.to(torch.float64) - offset) / scale
        if self.mode == "quantile":
            y = y - 1.0
        return y.to(dtype)

    def unnormalize(
        self,
        y: torch.Tensor,
        feature: Literal["state", "actions"],
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Inverse of :meth:`normalize` in the stats' convention (float64 arithmetic)."""
        offset, scale = self._params(feature, y, inverse=True)
        self._check_dim(y, offset, feature)
        z = y.to(torch.float64)
        if self.mode == "quantile":
            z = z + 1.0
        return (z * scale + offset).to(dtype)

    @staticmethod
    def _check_dim(x: torch.Tensor, offset: torch.Tensor, feature: str) -> None:
        if x.shape[-1] != offset.shape[0]:
            raise ValueError(
                f"{feature} has {x.shape[-1]} dims but the normalisation stats have "
                f"{offset.shape[0]}"
            )

    # ---- io -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormStats:
        return cls(
            state=FeatureStats(**data["state"]),
            actions=FeatureStats(**data["actions"]),
            mode=data.get("mode", "mean_std"),
            eps=float(data.get("eps", 1e-6)),
            convention=data.get("convention", "openpi"),
            source=str(data.get("source", "")),
        )

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / STATS_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> NormStats:
        return cls.from_dict(json.loads((Path(directory) / STATS_FILE).read_text()))
