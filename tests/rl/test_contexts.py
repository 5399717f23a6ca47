import numpy as np
import pytest

from ript_core.rl.contexts import Context, ContextSampler


def contexts(n=10):
    return [Context("toy", "reach-red", i) for i in range(n)]


def test_samples_distinct_contexts_deterministically():
    a, b = ContextSampler(contexts(), seed=3), ContextSampler(contexts(), seed=3)
    for _ in range(5):
        sa = a.sample(4)
        assert sa == b.sample(4) and len(set(sa)) == 4
    assert len(ContextSampler(contexts(3), seed=0).sample(10)) == 3


def test_reliably_solved_contexts_are_sampled_less():
    s = ContextSampler(contexts(), seed=0, solved_window=2, solved_weight=0.1)
    solved = Context("toy", "reach-red", 0)
    s.record(solved, [1, 1, 1, 1])
    assert not s.is_solved(solved)  # one perfect group is not yet "reliable"
    s.record(solved, [1, 1, 1, 1])
    assert s.is_solved(solved)
    w = s.weights()
    assert w[0] == pytest.approx(w[1] / 10)
    counts = sum(np.array([c == solved for c in s.sample(1)]) for _ in range(2000))
    assert counts.sum() < 2000 / 10 * 0.25  # ~1/91 of draws instead of 1/10
    s.record(solved, [1, 0, 1, 1])  # it failed once: back to full weight
    assert not s.is_solved(solved)


def test_state_dict_round_trip_continues_identically():
    a = ContextSampler(contexts(), seed=1)
    a.sample(3)
    a.record(Context("toy", "reach-red", 2), [1, 1])
    b = ContextSampler(contexts(), seed=99)
    b.load_state_dict(a.state_dict())
    assert a.sample(5) == b.sample(5)
    assert list(b.history[Context("toy", "reach-red", 2)]) == [1.0]
