"""The episode journal: every finished rollout on disk as it ends, and a
resumed run takes the recorded ones instead of running them again.

For backends whose episodes cost a person's time (a real robot: an operator
resets the scene and labels the outcome) a stop in the middle of an iteration
must not waste the episodes already run. The trainer resumes from its last
checkpoint and, because every episode's seed is a function of (run seed,
rank, iteration, round, group, slot) and the sampler's state is in the
checkpoint, asks for exactly the same requests again; the journal answers the
ones it holds from disk (policy inputs, the sampler's chains and log-probs,
success), which are what a re-run under the same weights would have produced.

One file per episode, ``<directory>/<key>.pkl``, written to a temporary name,
fsynced and renamed, so a kill at any instant leaves whole episodes only.
A backend opts in with ``BackendSpec.journal_episodes``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Sequence
from pathlib import Path

import attrs

from ript_core.rollout.runner import EpisodeRequest, Rollout, RolloutRunner, RolloutStats

log = logging.getLogger(__name__)


class EpisodeJournal:
    """Finished rollouts by request, one atomic file each, under ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, req: EpisodeRequest) -> Path:
        # the seed already encodes (run seed, rank, iteration, round, group,
        # slot); the context makes a key collision across tasks impossible
        task = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{req.backend}-{req.task}")
        return self.directory / f"{task}-{req.init_state}-{req.seed}.pkl"

    def save(self, rollout: Rollout) -> Path:
        final = self.path(rollout.request)
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(rollout, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final

    def load(self, req: EpisodeRequest) -> Rollout | None:
        """The recorded rollout of ``req``, renumbered as ``req``, or None."""
        path = self.path(req)
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            rollout: Rollout = pickle.load(f)
        return attrs.evolve(rollout, request=req)

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.pkl"))


class JournaledRunner:
    """A :class:`RolloutRunner` whose finished episodes go to ``journal`` as
    they end and whose already-recorded requests are answered from it."""

    def __init__(self, runner: RolloutRunner, journal: EpisodeJournal) -> None:
        self.runner = runner
        self.journal = journal
        runner.on_episode = journal.save
        self.replayed = 0  # episodes answered from the journal, over this runner's life

    def run(self, requests: Sequence[EpisodeRequest]) -> tuple[list[Rollout], RolloutStats]:
        recorded = [r for r in map(self.journal.load, requests) if r is not None]
        done = {r.request.episode_id for r in recorded}
        rollouts, stats = self.runner.run([r for r in requests if r.episode_id not in done])
        if recorded:
            self.replayed += len(recorded)
            log.info(
                "%d of %d episodes taken from the journal %s (recorded before a stop)",
                len(recorded), len(requests), self.journal.directory,
            )  # fmt: skip
        stats.episodes += len(recorded)
        return sorted(rollouts + recorded, key=lambda r: r.request.episode_id), stats
