"""The inference thread: requests that wait while a call runs share the next call."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ript_core.rl.actor import PI0Actor
from ript_core.serve.batcher import Batcher
from tests.policy.conftest import make_inputs, tiny_policy


class GatedActor:
    """The real actor, whose calls wait for ``gate``; records each call's seeds."""

    def __init__(self, actor: PI0Actor) -> None:
        self.actor = actor
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[int]] = []

    def act(self, inputs, seeds):
        self.calls.append(list(seeds))
        self.entered.set()
        assert self.gate.wait(timeout=60)
        if any(s < 0 for s in seeds):
            raise RuntimeError("a seed the test marked as failing")
        return self.actor.act(inputs, seeds)


@pytest.fixture
def gated():
    return GatedActor(PI0Actor(tiny_policy(), "ode"))


def test_waiting_requests_share_a_call_up_to_max_batch(gated):
    inputs = make_inputs(4, seed=1)
    batcher = Batcher(gated, max_batch=2)
    try:
        first = batcher.submit(inputs[0], 10)
        assert gated.entered.wait(timeout=60)  # the first call runs alone, the rest queue
        later = [batcher.submit(inp, 11 + i) for i, inp in enumerate(inputs[1:])]
        gated.gate.set()
        chunks = [f.result(timeout=120) for f in [first, *later]]
    finally:
        batcher.close()
    assert gated.calls == [[10], [11, 12], [13]]
    assert [c.batch_size for c in chunks] == [1, 2, 2, 1]
    # each waiter gets its own row of the call it shared
    pair = gated.actor.act(inputs[1:3], [11, 12]).actions
    np.testing.assert_array_equal(chunks[1].actions, pair[0])
    np.testing.assert_array_equal(chunks[2].actions, pair[1])
    alone = gated.actor.act(inputs[3:], [13]).actions[0]
    np.testing.assert_array_equal(chunks[3].actions, alone)


def test_a_failing_call_fails_its_waiters_only_and_cancelled_requests_are_skipped(gated):
    inputs = make_inputs(3, seed=2)
    batcher = Batcher(gated, max_batch=2)
    try:
        blocker = batcher.submit(inputs[0], 1)
        assert gated.entered.wait(timeout=60)
        failing = batcher.submit(inputs[1], -1)
        cancelled = batcher.submit(inputs[2], 3)
        assert cancelled.cancel()  # its client left before the call
        gated.gate.set()
        assert blocker.result(timeout=120).batch_size == 1
        with pytest.raises(RuntimeError, match="marked as failing"):
            failing.result(timeout=120)
        after = batcher.submit(inputs[2], 4).result(timeout=120)  # the thread goes on
    finally:
        batcher.close()
    assert gated.calls == [[1], [-1], [4]]
    np.testing.assert_array_equal(after.actions, gated.actor.act(inputs[2:], [4]).actions[0])


def test_max_batch_must_be_positive(gated):
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        Batcher(gated, max_batch=0)
