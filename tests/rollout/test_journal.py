"""Episodes an env voids are re-run without restarting anything; the episode
journal keeps every finished rollout as it ends and answers a repeated
request from disk without running it."""

import pickle

import numpy as np
import pytest

from ript_core.rollout.journal import EpisodeJournal, JournaledRunner
from ript_core.rollout.runner import EpisodeRequest, RolloutRunner
from ript_core.rollout.workers import InProcessEnvPool, ProcessEnvPool


@pytest.mark.parametrize("processes", [False, True])
def test_an_episode_the_env_discards_is_run_again_on_the_same_worker(
    fakesim, seeded_policy, processes
):
    reqs = [EpisodeRequest(i, "fakesim", "void", i % 2, seed=i) for i in range(3)]
    pool = ProcessEnvPool(1) if processes else InProcessEnvPool(1)
    with pool:
        pid = pool.call_all("pid")
        rollouts, stats = RolloutRunner(seeded_policy(dim=2), pool, replan_every=1).run(reqs)
        assert pool.call_all("pid") == pid and pool.restarts == 0  # the env was fine
    with InProcessEnvPool(1) as pool:  # the reference: nothing voided (the marker exists now)
        reference, _ = RolloutRunner(seeded_policy(dim=2), pool, replan_every=1).run(reqs)
    assert stats.discarded_episodes == 1
    assert "discarded by the env: the link dropped" in stats.failures[0]
    assert [(r.request, r.success, r.length) for r in rollouts] == [
        (r.request, r.success, r.length) for r in reference
    ]


class Refusing:
    def act(self, inputs, seeds):
        raise AssertionError("a journaled episode was run again")


def test_the_journal_writes_each_episode_as_it_ends_and_replays_it(seeded_policy, tmp_path):
    reqs = [EpisodeRequest(i, "toy", "reach-red", init_state=i, seed=50 + i) for i in range(4)]
    journal = EpisodeJournal(tmp_path / "episodes")
    seen_on_disk = []

    def check_previous_on_disk(call):  # every finished episode is on disk before the next call
        seen_on_disk.append(len(journal))

    with InProcessEnvPool(1) as pool:
        runner = JournaledRunner(
            RolloutRunner(seeded_policy(on_call=check_previous_on_disk), pool, replan_every=5),
            journal,
        )
        first, _ = runner.run(reqs[:3])
    assert len(journal) == 3 and not list(journal.directory.glob("*.tmp"))
    # one worker: episode k's decisions start after episodes 0..k-1 were written
    assert seen_on_disk[0] == 0 and seen_on_disk[-1] == 2 and seen_on_disk == sorted(seen_on_disk)

    with InProcessEnvPool(1) as pool:  # the resumed run: 3 recorded, 1 new
        replay = JournaledRunner(RolloutRunner(seeded_policy(), pool, replan_every=5), journal)
        again, stats = replay.run(reqs)
    assert replay.replayed == 3 and stats.episodes == 4 and len(journal) == 4
    for a, b in zip(first, again[:3], strict=True):
        assert (a.request, a.success, a.length) == (b.request, b.success, b.length)
        np.testing.assert_array_equal(a.steps[0].policy_input.state, b.steps[0].policy_input.state)
        assert [s.record for s in a.steps] == [s.record for s in b.steps]
    with InProcessEnvPool(1) as pool:  # all recorded: the policy is never called
        out, _ = JournaledRunner(RolloutRunner(Refusing(), pool), journal).run(reqs)
    assert [r.request for r in out] == reqs
    with open(journal.path(reqs[0]), "rb") as f:
        assert pickle.load(f).request == reqs[0]
