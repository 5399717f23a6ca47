"""How an env says "this episode does not count" without stopping the run."""

from __future__ import annotations


class EpisodeDiscarded(RuntimeError):
    """Raised by an env's ``reset`` or ``step``: the episode in progress is void
    (a dropped link to a robot, an operator who took over) but the env is
    usable again after its next reset. The rollout runner throws the episode
    away, logs the reason and runs it again from the start, as it does for a
    worker that died; it is neither a policy failure nor a backend bug (any
    other exception stops the run)."""
