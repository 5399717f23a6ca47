"""A run's fault accounting: what went wrong without stopping it, counted.

Counters live in the trainer's ``history`` (checkpointed, so a resumed run
keeps counting); each iteration logs them as ``faults/<name>``, and the run
ends with a "faults:" line (docs/reliability.md tables each fault). What
stops a run instead: ``ript.max_consecutive_skips`` updates in a row that
took no optimizer step, and non-finite weights or optimizer state before a
checkpoint is written.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ript_core.rl import distributed as D
from ript_core.rl.fsdp import is_sharded

log = logging.getLogger(__name__)

#: An update that changes the weights' global norm by more than this fraction
#: of it is reported: normal RIPT updates move it by ~1e-4 (docs/reliability.md)
ABSURD_WEIGHT_CHANGE = 0.5
#: Run-long fault counters: in metrics.jsonl (``faults/<name>``), summary.json
#: and the end-of-run line
FAULT_COUNTERS = ("discarded_episodes", "worker_restarts", "skipped_steps", "absurd_updates")


class TrainingError(RuntimeError):
    pass


def count_update(
    history: dict[str, Any],
    upd: dict[str, float],
    *,
    iteration: int,
    lr: float,
    is_main: bool,
) -> None:
    """Add an update's skipped optimizer steps and absurd weight move to the
    counters, with a warning for each."""
    skipped, steps = int(upd["skipped_steps"]), int(upd["optimizer_steps"])
    history["skipped_steps"] = history.get("skipped_steps", 0) + skipped
    if skipped and is_main:
        log.warning(
            "iteration %d: %d of %d optimizer steps skipped (non-finite loss or gradient); "
            "%d skipped in this run so far",
            iteration,
            skipped,
            skipped + steps,
            history["skipped_steps"],
        )
    change = upd.get("weight_norm_change", 0.0)
    if change > ABSURD_WEIGHT_CHANGE:
        history["absurd_updates"] = history.get("absurd_updates", 0) + 1
        if is_main:
            log.warning(
                "iteration %d: the update changed the weights' norm by %.3g times its size "
                "(more than %g): optim.lr %g is likely far too high",
                iteration,
                change,
                ABSURD_WEIGHT_CHANGE,
                lr,
            )


def consecutive_skips(upd: dict[str, float], before: int, limit: int, latest: str) -> int:
    """Fully skipped updates in a row after ``upd``; raises at ``limit``."""
    skipped, steps = int(upd["skipped_steps"]), int(upd["optimizer_steps"])
    if steps:
        return 0
    if not skipped:
        return before
    if before + 1 >= limit:
        raise TrainingError(
            f"{before + 1} updates in a row had a non-finite loss or gradient; "
            "stopping. Lower optim.lr, check update.max_grad_norm and policy.noise_level, "
            f"or resume from an earlier checkpoint (latest: {latest})"
        )
    return before + 1


def fault_metrics(
    history: dict[str, Any], discarded: float, worker_restarts: int
) -> dict[str, float]:
    """This iteration's discarded episodes (every rank's, summed by the caller)
    and the pool's restarts into the counters; every counter as a ``faults/``
    metric (cumulative over the run)."""
    history["discarded_episodes"] = history.get("discarded_episodes", 0) + int(discarded)
    history["worker_restarts"] = worker_restarts
    return {f"faults/{k}": history.get(k, 0) for k in FAULT_COUNTERS}


def nonfinite_state(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> str:
    """'' when every trainable weight and optimizer state tensor is finite on
    every rank, else what is not (``"3 of 88 weight tensors"``)."""
    states = [
        t
        for st in optimizer.state.values()
        for t in st.values()
        if torch.is_tensor(t) and t.is_floating_point()
    ]
    counts = []
    for group in (params, states):
        local = [(t.to_local() if is_sharded(t) else t).detach() for t in group]
        counts.append(sum(int(not bool(t.isfinite().all())) for t in local))
    bad_w, bad_o = (int(x) for x in D.sum_floats([float(c) for c in counts]))
    parts = [f"{bad_w} of {len(params)} weight tensors"] if bad_w else []
    parts += [f"{bad_o} of {len(states)} optimizer state tensors"] if bad_o else []
    return " and ".join(parts)
