import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ript_core.plugins import ENTRY_POINT_GROUP, get_registry
from ript_core.rollout.runner import PolicyOutput


@pytest.fixture
def fakesim(tmp_path, monkeypatch):
    """Install tests/rollout/fakesim_plugin.py as a distribution with an entry point."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(Path(__file__).with_name("fakesim_plugin.py"), site / "ript_test_fakesim.py")
    info = site / "ript_test_fakesim-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ript-test-fakesim\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nfakesim = ript_test_fakesim\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKESIM_HANG_ONCE", str(tmp_path / "hung-once"))
    get_registry(reload=True)
    yield
    sys.modules.pop("ript_test_fakesim", None)
    get_registry(reload=True)


class SeededPolicy:
    """Actions drawn from the per-decision seed: depends on nothing else.
    Counts its constructions so tests can prove there is one copy."""

    constructed = 0

    def __init__(self, chunk=8, dim=3, on_call=None):
        type(self).constructed += 1
        self.chunk, self.dim, self.calls, self.on_call = chunk, dim, 0, on_call
        self.batch_sizes = []
        self.announced: list[tuple[int, ...]] = []

    def expect_batch_sizes(self, sizes):
        self.announced.append(tuple(sizes))

    def act(self, inputs, seeds):
        self.calls += 1
        self.batch_sizes.append(len(inputs))
        if self.on_call is not None:
            self.on_call(self.calls)
        actions = np.stack(
            [np.random.default_rng(s).uniform(-0.6, 1.0, (self.chunk, self.dim)) for s in seeds]
        ).astype(np.float32)
        records = [
            {"seed": s, "state0": float(x.state[0])} for s, x in zip(seeds, inputs, strict=True)
        ]
        return PolicyOutput(actions, records)


@pytest.fixture
def seeded_policy():
    return SeededPolicy
