"""One inference thread for every connection, batching the requests that wait.

The event loop never runs the policy: a chunk takes seconds on a CPU (and a
first call may compile), and websockets >= 15 clients drop a server whose
loop stops answering their keepalive pings. Requests that arrive while a
call runs wait in a queue; the next call takes all of them, up to
``max_batch``, so batching adds no latency of its own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from ript_core.policy_input import PolicyInput

if TYPE_CHECKING:
    from ript_core.rollout.runner import ChunkPolicy


@attrs.frozen
class Chunk:
    """One sample's action chunk and the call that made it."""

    actions: np.ndarray  # [chunk, action_dim], the policy's un-normalised units
    infer_ms: float  # the policy call's wall time
    batch_size: int  # samples in that call


@attrs.frozen
class _Request:
    policy_input: PolicyInput
    seed: int
    future: Future


class Batcher:
    """Runs ``policy.act`` (the rollout runner's call) on a thread of its own."""

    def __init__(self, policy: ChunkPolicy, max_batch: int = 1) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.policy = policy
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ript-serve-policy", daemon=True)
        self._thread.start()

    def submit(self, policy_input: PolicyInput, seed: int) -> Future[Chunk]:
        """Queue one sample; the future holds its :class:`Chunk` (or the call's error)."""
        future: Future[Chunk] = Future()
        self._queue.put(_Request(policy_input, seed, future))
        return future

    def run_batch(self, inputs: Sequence[PolicyInput], seeds: Sequence[int]) -> list[Chunk]:
        """One policy call, here and now (warm-up, tests)."""
        start = time.perf_counter()
        out: Any = self.policy.act(list(inputs), list(seeds))
        ms = 1e3 * (time.perf_counter() - start)
        return [Chunk(np.asarray(a), ms, len(inputs)) for a in out.actions]

    def warm_up(self, example: PolicyInput) -> None:
        """One call of every batch size up to ``max_batch``, before any client:
        on CUDA each size's first call captures its graph (seconds), and on the
        CPU the first calls are slow too; a client should not wait for that."""
        for n in range(1, self.max_batch + 1):
            self.run_batch([example] * n, list(range(n)))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _take(self) -> list[_Request] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # close after this call
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            # a request whose waiter is gone (cancelled) is not computed
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                chunks = self.run_batch([r.policy_input for r in batch], [r.seed for r in batch])
            except BaseException as exc:  # every waiter hears of it; the thread goes on
                for r in batch:
                    r.future.set_exception(exc)
                continue
            for r, chunk in zip(batch, chunks, strict=True):
                r.future.set_result(chunk)
