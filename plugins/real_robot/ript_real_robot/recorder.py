"""Every finished (or discarded) robot episode on disk as it ends.

One ``.npz`` per episode under the episodes folder: the frames of every
camera, the states, the actions the policy asked for and the ones the safety
layer let through (``actions_checked``, in a dry run), plus ``meta`` (JSON: task, scene, seed, outcome, who
labelled it, safety events, times). Written to a temporary name, fsynced and
renamed: a stop at any instant leaves whole episodes only. This is the robot
data (a dataset for later BC, an audit of every intervention); the trainer's
own journal (``ript_core.rollout.journal``) keeps what the update needs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np


@attrs.define
class EpisodeBuffer:
    task: str
    scene: str
    seed: int
    started: float = attrs.Factory(time.time)
    frames: dict[str, list[np.ndarray]] = attrs.Factory(dict)
    states: list[np.ndarray] = attrs.Factory(list)
    requested: list[np.ndarray] = attrs.Factory(list)
    #: dry run: the actions the safety layer let through (NaN: none that tick)
    checked: list[np.ndarray] = attrs.Factory(list)

    def observe(self, images: dict[str, np.ndarray], state: np.ndarray) -> None:
        for cam, img in images.items():
            self.frames.setdefault(cam, []).append(np.asarray(img))
        self.states.append(np.asarray(state, dtype=np.float32))

    def act(self, action: np.ndarray) -> None:
        self.requested.append(np.asarray(action, dtype=np.float32))


class EpisodeRecorder:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, ep: EpisodeBuffer, outcome: str, **meta: Any) -> Path:
        """``outcome``: success | failure | discarded; ``meta``: JSON-able extras."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ep.started))
        # the running number first: names sort in recording order even when two
        # episodes end within one second
        index = len(list(self.directory.glob("*.npz")))
        name = f"{index:06d}-{stamp}-{ep.task}-{ep.scene}-{ep.seed}-{outcome}"
        final = self.directory / f"{name}.npz"
        n = 1
        while final.exists():
            final = self.directory / f"{name}-{n}.npz"
            n += 1
        info = {"task": ep.task, "scene": ep.scene, "seed": ep.seed, "outcome": outcome,
                "started": ep.started, "ended": time.time(), "steps": len(ep.requested), **meta}  # fmt: skip
        arrays = {f"frames_{cam}": np.stack(f) for cam, f in ep.frames.items() if f}
        if ep.states:
            arrays["states"] = np.stack(ep.states)
        if ep.requested:
            arrays["actions_requested"] = np.stack(ep.requested)
        if ep.checked:
            arrays["actions_checked"] = np.stack(ep.checked).astype(np.float32)
        tmp = final.with_name(final.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(info, default=str)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final


def read_episode(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a recorded episode."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        return json.loads(str(z["meta"])), arrays
