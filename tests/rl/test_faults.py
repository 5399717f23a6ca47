"""Fault accounting on its own: the skip streak, the counters, absurd moves.
(The trainer-level behaviour is in tests/reliability/.)"""

from __future__ import annotations

import pytest

from ript_core.rl import faults
from ript_core.rl.faults import FAULT_COUNTERS, TrainingError


def test_the_skip_streak_counts_fully_skipped_updates_and_stops_at_the_limit():
    skipped = {"skipped_steps": 2, "optimizer_steps": 0}
    stepped = {"skipped_steps": 1, "optimizer_steps": 3}
    idle = {"skipped_steps": 0, "optimizer_steps": 0}  # a rank without decisions
    streak = faults.consecutive_skips(skipped, 0, 3, "iter_000004")
    assert streak == 1
    assert faults.consecutive_skips(idle, streak, 3, "x") == 1
    assert faults.consecutive_skips(stepped, streak, 3, "x") == 0
    streak = faults.consecutive_skips(skipped, streak, 3, "x")
    with pytest.raises(TrainingError, match=r"3 updates in a row.*latest: iter_000004"):
        faults.consecutive_skips(skipped, streak, 3, "iter_000004")


def test_counters_accumulate_and_every_one_is_a_metric(caplog):
    history: dict = {}
    faults.count_update(
        history, {"skipped_steps": 1, "optimizer_steps": 3}, iteration=1, lr=1e-4, is_main=True
    )
    upd = {"skipped_steps": 0, "optimizer_steps": 4, "weight_norm_change": 0.9}
    faults.count_update(history, upd, iteration=2, lr=1e-2, is_main=True)
    assert "optim.lr 0.01 is likely far too high" in caplog.text
    assert "1 of 4 optimizer steps skipped" in caplog.text
    metrics = faults.fault_metrics(history, discarded=2.0, worker_restarts=5)
    metrics = faults.fault_metrics(history, discarded=1.0, worker_restarts=6)
    assert metrics == {
        "faults/discarded_episodes": 3,
        "faults/worker_restarts": 6,
        "faults/skipped_steps": 1,
        "faults/absurd_updates": 1,
    }
    assert set(metrics) == {f"faults/{k}" for k in FAULT_COUNTERS}
