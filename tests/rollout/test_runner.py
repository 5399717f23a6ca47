"""The rollout runner on real worker processes: equivalence with a sequential
run, crash and hang recovery, contract checks, episode bookkeeping."""

import os
import signal

import numpy as np
import pytest

from ript_core import ObservationError
from ript_core.rollout.runner import EpisodeRequest, RolloutRunner, decision_seed
from ript_core.rollout.workers import InProcessEnvPool, ProcessEnvPool, ResetCommand


def toy_requests(n=12):
    tasks = ["reach-red", "reach-green", "reach-blue", "reach-yellow"]
    return [
        EpisodeRequest(i, "toy", tasks[i % 4], init_state=(7 * i) % 50, seed=100 + i)
        for i in range(n)
    ]


def summary(rollouts):
    return [
        (
            r.request,
            r.success,
            r.length,
            [(s.n_executed, s.record["seed"]) for s in r.steps],
            np.stack([s.policy_input.state for s in r.steps]),
            np.stack([s.policy_input.images["base_0_rgb"] for s in r.steps]),
        )
        for r in rollouts
    ]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(summary(a), summary(b), strict=True):
        assert x[:4] == y[:4]
        np.testing.assert_array_equal(x[4], y[4])
        np.testing.assert_array_equal(x[5], y[5])


@pytest.fixture(scope="module")
def sequential_toy_rollouts():
    from tests.rollout.conftest import SeededPolicy

    with InProcessEnvPool(1) as pool:
        rollouts, _ = RolloutRunner(SeededPolicy(), pool, replan_every=4).run(toy_requests())
    return rollouts


@pytest.mark.parametrize("n_workers", [1, 3])
def test_n_workers_give_exactly_the_sequential_rollouts(
    n_workers, seeded_policy, sequential_toy_rollouts
):
    policy = seeded_policy()
    with ProcessEnvPool(n_workers) as pool:
        rollouts, stats = RolloutRunner(policy, pool, replan_every=4).run(toy_requests())
        assert pool.call_all("torch_loaded") == [False] * n_workers  # no model in any worker
    assert_same(rollouts, sequential_toy_rollouts)
    assert stats.episodes == 12 and stats.discarded_episodes == 0
    assert max(policy.batch_sizes) == n_workers  # one batched call serves all live envs
    assert stats.env_steps == sum(r.length for r in rollouts)
    assert 0 < stats.batch_occupancy <= 1


def test_max_batch_splits_policy_calls_without_changing_rollouts(
    seeded_policy, sequential_toy_rollouts
):
    # the plan's inference batch can be smaller than the number of workers
    policy = seeded_policy()
    with InProcessEnvPool(3) as pool:
        rollouts, stats = RolloutRunner(policy, pool, replan_every=4, max_batch=2).run(
            toy_requests()
        )
    assert max(policy.batch_sizes) == 2 and policy.batch_sizes.count(1) > 0
    assert stats.policy_samples == sum(policy.batch_sizes)
    assert_same(rollouts, sequential_toy_rollouts)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        RolloutRunner(policy, pool, max_batch=0)


def test_throughput_metrics(seeded_policy):
    """Issue 4 item 5: env steps/s, policy calls/s, batch occupancy, time split."""
    with InProcessEnvPool(2) as pool:
        rollouts, stats = RolloutRunner(seeded_policy(), pool, replan_every=4).run(toy_requests(6))
    m = stats.as_metrics()
    assert m["rollout/episodes"] == 6 and m["rollout/env_steps"] == sum(r.length for r in rollouts)
    assert m["rollout/env_steps_per_s"] == pytest.approx(stats.env_steps / stats.wall_s)
    assert m["rollout/policy_calls_per_s"] == pytest.approx(stats.policy_calls / stats.wall_s)
    assert m["rollout/mean_batch"] == pytest.approx(stats.policy_samples / stats.policy_calls)
    assert 0 < m["rollout/batch_occupancy"] <= 1
    assert m["rollout/batch_occupancy"] == pytest.approx(m["rollout/mean_batch"] / 2)
    # the policy and the env wait are disjoint parts of the wall time
    assert m["rollout/policy_time_frac"] > 0 and m["rollout/env_wait_frac"] >= 0
    assert m["rollout/policy_time_frac"] + m["rollout/env_wait_frac"] <= 1
    assert m["rollout/discarded_episodes"] == 0


def test_policy_is_built_once_whatever_the_number_of_workers(seeded_policy):
    seeded_policy.constructed = 0
    policy = seeded_policy()
    for n in (1, 2, 4):
        with ProcessEnvPool(n) as pool:
            RolloutRunner(policy, pool, replan_every=8).run(toy_requests(4))
    assert seeded_policy.constructed == 1


class _ArrivalReversedPool(InProcessEnvPool):
    """Replies in the reverse of worker order (as a process pool may deliver
    them); records which worker each episode was started on."""

    def __init__(self, n):
        super().__init__(n)
        self.started = []

    def send(self, i, cmd):
        if isinstance(cmd, ResetCommand):
            self.started.append((i, cmd.seed))
        super().send(i, cmd)

    def collect(self, *args, **kwargs):
        return list(reversed(super().collect(*args, **kwargs)))


@pytest.mark.parametrize("groups", [1, 2])
def test_episodes_that_end_together_take_the_queue_in_worker_order(seeded_policy, groups):
    """One chunk per episode, so every episode ends on the same turn as its
    group-mates: the next requests go to the workers in worker order, not in
    the order their replies arrived."""
    with _ArrivalReversedPool(4) as pool:
        runner = RolloutRunner(
            seeded_policy(), pool, replan_every=4, max_steps=4, pipeline_groups=groups
        )
        runner.run(toy_requests(12))
    # three waves of four: the first in worker order, the next two group by
    # group (strided groups), each group in worker order
    order = [w for g in range(groups) for w in range(g, 4, groups)]
    by_worker = {w: [seed for i, seed in pool.started if i == w] for w in range(4)}
    assert by_worker == {
        w: [100 + w] + [100 + 4 * k + order.index(w) for k in (1, 2)] for w in range(4)
    }


def test_sigkill_of_a_worker_discards_and_reruns_its_episode(
    seeded_policy, sequential_toy_rollouts
):
    pool = ProcessEnvPool(3)
    killed = []

    def kill_worker_1(call):
        if call == 3:
            killed.append(pool.pid(1))
            os.kill(pool.pid(1), signal.SIGKILL)

    with pool:
        runner = RolloutRunner(seeded_policy(on_call=kill_worker_1), pool, replan_every=4)
        rollouts, stats = runner.run(toy_requests())
        assert pool.pid(1) != killed[0]  # a fresh worker took its place
    assert stats.discarded_episodes == 1 and pool.restarts == 1
    assert "discarded: worker 1" in stats.failures[0]
    assert_same(rollouts, sequential_toy_rollouts)  # the re-run episode is as if nothing happened


def test_hung_worker_is_restarted_after_the_timeout(fakesim, seeded_policy):
    reqs = [EpisodeRequest(i, "fakesim", "hang", i % 2, seed=i) for i in range(4)]
    with ProcessEnvPool(2, timeout_s=3.0) as pool:
        rollouts, stats = RolloutRunner(seeded_policy(dim=2), pool).run(reqs)
    assert [r.request.episode_id for r in rollouts] == [0, 1, 2, 3]
    assert stats.discarded_episodes == 1
    assert "no answer within 3 s" in stats.failures[0]


def test_settle_steps_replan_window_and_max_steps(fakesim, seeded_policy):
    reqs = [EpisodeRequest(i, "fakesim", "count", i, seed=i) for i in range(6)]
    with InProcessEnvPool(1) as pool:
        rollouts, _ = RolloutRunner(seeded_policy(dim=2), pool, replan_every=3, max_steps=10).run(
            reqs
        )
    for r in rollouts:
        # first decision sees the env after the 2 settle steps, t counts from there
        assert r.steps[0].policy_input.state[0] == 2
        assert sum(s.n_executed for s in r.steps) == r.length <= 10
        assert all(s.n_executed == 3 for s in r.steps[:-1])
        assert [s.record["seed"] for s in r.steps] == [
            decision_seed(r.request.seed, k) for k in range(len(r.steps))
        ]
        if not r.success:
            assert r.length == 10
    assert any(r.success for r in rollouts) and not all(r.success for r in rollouts)


def test_success_stops_the_episode_mid_chunk_without_termination(fakesim, seeded_policy):
    """A backend may report success and keep running: the episode still ends at
    the first successful step, even inside an action chunk."""
    reqs = [EpisodeRequest(i, "fakesim", "quiet", i, seed=i) for i in range(6)]
    with InProcessEnvPool(1) as pool:
        rollouts, _ = RolloutRunner(seeded_policy(dim=2), pool, replan_every=5, max_steps=12).run(
            reqs
        )
    for r in rollouts:
        # replay the executed actions (SeededPolicy: actions are a function of the seed)
        executed = np.concatenate(
            [
                np.random.default_rng(s.record["seed"])
                .uniform(-0.6, 1.0, (8, 2))
                .astype(np.float32)[: s.n_executed, 0]
                for s in r.steps
            ]
        )
        total = np.cumsum(executed.astype(np.float64))
        over = total > 1 + r.request.init_state % 3
        assert len(executed) == r.length
        if r.success:
            assert over[-1] and not over[:-1].any()  # stopped at the first success
        else:
            assert r.length == 12 and not over.any()
    assert any(r.success and r.steps[-1].n_executed < 5 for r in rollouts)


def test_bad_observation_stops_with_backend_and_key(fakesim, seeded_policy):
    with (
        InProcessEnvPool(1) as pool,
        pytest.raises(ObservationError, match="backend 'fakesim'.*'state' contains non-finite"),
    ):
        RolloutRunner(seeded_policy(dim=2), pool, replan_every=1).run(
            [EpisodeRequest(0, "fakesim", "nan", 0, 0)]
        )


def test_bad_context_fails_before_any_env_work(seeded_policy):
    from ript_core.plugins import get_registry

    n = get_registry().task_info("toy", "reach-red").n_init_states  # one past the last
    with InProcessEnvPool(1) as pool:
        with pytest.raises(ValueError, match=f"init_state {n} not in"):
            RolloutRunner(seeded_policy(), pool).run([EpisodeRequest(0, "toy", "reach-red", n, 0)])
        assert pool._hosts[0].env is None


def test_frames_are_recorded_when_asked(seeded_policy):
    with InProcessEnvPool(1) as pool:
        rollouts, _ = RolloutRunner(seeded_policy(), pool, record_frames=True).run(toy_requests(2))
    for r in rollouts:
        assert len(r.frames) == r.length + 1
        assert r.frames[0].shape == (64, 64, 3) and r.frames[0].dtype == np.uint8
