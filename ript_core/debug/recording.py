"""A recording: named pipeline stages (arrays, in pipeline order) plus metadata.

On disk a recording is a directory with two files:

- ``stages.safetensors``: one tensor per stage, keyed by the stage name
  (``input/token_ids``, ``denoise/step_03/velocity``, ...);
- ``meta.json``: the stage order, each stage's original dtype, and what is
  needed to interpret or reproduce the run (versions, dtype, device, seeds,
  prompt, source of the observation, TF32 settings).

safetensors because every PI0 stack (JAX via numpy, PyTorch, lerobot) can
write it without ript-core, so a recording of *another* implementation can
be diffed against ours. A recording written by hand needs only
``stages.safetensors``; ``meta.json`` is optional (then the stage order is
the file's key order).

:meth:`Recording.load` also reads a single ``.npz`` or ``.json`` dump, the
form a user's script on another implementation's side most easily writes
(docs/debugging.md has the one for openpi's ``Policy.infer``): nested keys
are joined with ``/``, numeric arrays become stages, strings and other
scalars of a JSON dump go to the metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

STAGES_FILE = "stages.safetensors"
META_FILE = "meta.json"


def to_numpy(value: Any) -> np.ndarray:
    """A stage value as a numpy array. bf16 has no numpy dtype: it is widened
    to float32 exactly (the original dtype is kept in the metadata)."""
    if torch.is_tensor(value):
        t = value.detach()
        if t.dtype == torch.bfloat16:
            t = t.to(torch.float32)
        return t.cpu().contiguous().numpy()
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind in "USO":
        raise TypeError(f"a stage must be numeric, got dtype {arr.dtype}; put text in the metadata")
    return np.ascontiguousarray(arr)


class Recording:
    """Ordered stages plus metadata. ``rec["input/token_ids"]`` is a numpy array."""

    def __init__(
        self, stages: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None
    ) -> None:
        self.stages: dict[str, np.ndarray] = {}
        self.meta: dict[str, Any] = dict(meta or {})
        self.meta.setdefault("stage_dtypes", {})
        for name, value in (stages or {}).items():
            self.add(name, value)

    def add(self, name: str, value: Any) -> None:
        if name in self.stages:
            raise KeyError(f"stage {name!r} recorded twice; stage names must be unique")
        dtype = str(value.dtype).replace("torch.", "") if hasattr(value, "dtype") else None
        self.stages[name] = to_numpy(value)
        self.meta["stage_dtypes"][name] = dtype or str(self.stages[name].dtype)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.stages[name]

    def __contains__(self, name: object) -> bool:
        return name in self.stages

    def __iter__(self) -> Iterator[str]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    @property
    def names(self) -> list[str]:
        return list(self.stages)

    # ---- io -------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(self.stages, str(out / STAGES_FILE))
        meta = dict(self.meta)
        meta["stages"] = self.names
        (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return out

    @classmethod
    def from_dump(cls, path: str | Path) -> Recording:
        """A ``.npz`` (``np.savez``) or ``.json`` dump of named arrays, possibly nested."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dump file {path} does not exist")
        rec = cls(meta={"path": str(path), "dump": path.suffix.lstrip(".")})
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    value = data[key]
                    if value.dtype.kind in "USO":
                        rec.meta[key] = str(value) if value.ndim == 0 else value.tolist()
                    else:
                        rec.add(key, value)
            return rec
        if path.suffix != ".json":
            raise ValueError(f"{path}: a dump must be .npz or .json, got {path.suffix!r}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc

        def walk(node: Any, prefix: str) -> None:
            if isinstance(node, Mapping):
                for key, value in node.items():
                    walk(value, f"{prefix}/{key}" if prefix else str(key))
                return
            arr = None
            if isinstance(node, list | int | float | bool):
                try:
                    arr = np.asarray(node)
                except ValueError:  # ragged nested lists
                    arr = None
            if arr is not None and arr.dtype.kind in "biuf":
                rec.add(prefix, arr)
            else:  # strings, nulls, ragged lists: context, not numbers to compare
                rec.meta[prefix] = node

        walk(data, "")
        return rec

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """``path``: a recording directory, its ``stages.safetensors`` file, or a
        ``.npz`` / ``.json`` dump (see :meth:`from_dump`)."""
        from safetensors.numpy import load_file

        path = Path(path)
        if path.suffix in (".npz", ".json") and not path.is_dir():
            return cls.from_dump(path)
        directory = path if path.is_dir() else path.parent
        stages_file = path if path.is_file() else directory / STAGES_FILE
        if not stages_file.is_file():
            raise FileNotFoundError(
                f"no recording at {path}: expected a directory holding {STAGES_FILE} "
                f"(and optionally {META_FILE}), as written by 'ript record'"
            )
        tensors = load_file(str(stages_file))
        meta_file = directory / META_FILE
        meta: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        order = [n for n in meta.pop("stages", []) if n in tensors]
        order += [n for n in tensors if n not in order]
        rec = cls(meta=meta)
        dtypes = dict(rec.meta.get("stage_dtypes", {}))
        rec.meta["stage_dtypes"] = {}
        for name in order:
            rec.add(name, tensors[name])
            if name in dtypes:
                rec.meta["stage_dtypes"][name] = dtypes[name]
        rec.meta["path"] = str(directory)
        return rec
