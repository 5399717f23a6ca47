"""The rollout runner: env workers step, ONE policy acts for all of them.

The env workers are split into ``pipeline_groups`` = G fixed groups (worker
``i`` belongs to group ``i % G``), visited round robin. A visit of group g:

1. waits for the replies of g's workers only (the other groups keep
   stepping the chunks they were sent), checks each observation against the
   env contract and turns it into a ``PolicyInput``; a worker whose episode
   ended takes the next queued episode and resets to its (task, init state),
   then runs the task's settle steps;
2. batches g's envs that need a new chunk into ONE policy call (or several of
   at most ``max_batch`` when the plan's inference batch is smaller);
3. sends each env the first ``replan_every`` actions of its chunk (fewer if
   the task's step budget ends sooner), to run in its worker, and moves on.

So while the policy infers a chunk for group A, groups B, C, ... step their
previous chunks in their processes: with G > 1 neither the policy device nor
the simulators wait for each other when their costs match (docs/planner.md
gives the schedule and its analytic period). G = 1 is the lock-step
schedule: infer for every env, then wait for every env.

A policy with ``submit`` (the CUDA actor) is asynchronous: step 2 queues the
call on the device and the runner moves on at once; step 3 happens when the
call lands, checked whenever the runner waits for env replies. The host's
share of a call (preprocessing the next group, un-normalising the last
chunk, pipe I/O) then overlaps the device's work instead of adding to it.

An episode ends on success, termination, truncation or the task's max steps.
A worker that dies or hangs is restarted by the pool; its episode is thrown
away and run again from the start (it is not a failure of the policy).

Determinism: the policy gets one seed per (episode seed, decision index), so
an episode's actions do not depend on which other envs shared its batch, on
how many workers or groups there are, or on the schedule. The schedule
itself does not depend on timing either: a visit always waits for every
outstanding worker of its group, so batch compositions are a function of
the requests and G alone.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import numpy as np

from ript_core.envs.catalogue import TaskInfo
from ript_core.envs.interfaces import ActionAdapter, ObservationAdapter, PolicyInput
from ript_core.envs.validation import validate_observation
from ript_core.plan.schedule import round_batch_sizes
from ript_core.plugins import get_registry
from ript_core.rollout.workers import (
    EnvPool,
    ResetCommand,
    StepCommand,
    StepResult,
    WorkerFailure,
)

log = logging.getLogger(__name__)


@attrs.frozen
class EpisodeRequest:
    """One rollout to run: a context (backend, task, init state) and a seed."""

    episode_id: int
    backend: str
    task: str
    init_state: int
    seed: int
    group: int = -1


@attrs.frozen
class PolicyOutput:
    """What a policy returns for a batch of ``B`` observations.

    ``actions``: ``[B, chunk, D]`` in the policy's un-normalised action units
    (the action adapter maps them to the env). ``records``: one dict per
    sample of whatever the trainer needs later (denoising chain, log-prob).
    """

    actions: np.ndarray
    records: list[dict[str, Any]]


class PendingOutput(Protocol):
    """A policy call in flight (what ``ChunkPolicy.submit`` returns).

    It may also carry ``device_s``, set by :meth:`result`: the seconds its
    device worked on the call, which the runner then counts as the policy's
    busy time instead of the host's wall time around it.
    """

    def ready(self) -> bool:
        """Whether :meth:`result` would return without waiting."""
        ...

    def result(self) -> PolicyOutput:
        """Wait for the call and return its output (again on later calls)."""
        ...


class ChunkPolicy(Protocol):
    """What the runner drives.

    It may also have:

    - ``expect_batch_sizes(sizes)``: the runner then announces the batch of
      every call of a full round before it starts
      (``planner.round_batch_sizes``; a CUDA-graph policy can prepare those
      sizes instead of padding them);
    - ``submit(inputs, seeds) -> PendingOutput``: ``act`` in two halves. It
      queues the call's device work and returns before that work runs; the
      runner then collects and prepares the next group while the device
      computes, and hands each env its chunk as soon as the call is ready
      (``ript_core.rl.actor.PI0Actor`` on CUDA). ``submit(...).result()``
      must equal ``act(...)``.
    """

    def act(self, inputs: Sequence[PolicyInput], seeds: Sequence[int]) -> PolicyOutput: ...


@attrs.frozen
class _Done:
    """A synchronous ``act`` seen as a call in flight that has already landed."""

    output: PolicyOutput

    def ready(self) -> bool:
        return True

    def result(self) -> PolicyOutput:
        return self.output


@attrs.define
class _Call:
    """One policy call the runner has submitted and not yet delivered."""

    workers: list[int]
    pending: PendingOutput
    host_s: float  # wall time of the submit
    submitted_at: float  # perf_counter() when the submit began


#: How long the runner waits for env replies before it looks at its policy
#: calls in flight again (a call that lands sends its envs their chunks).
POLL_S = 0.0005


@attrs.define
class DecisionStep:
    """One policy query of an episode and what came of it."""

    policy_input: PolicyInput
    record: dict[str, Any]
    n_executed: int = 0


@attrs.define
class Rollout:
    request: EpisodeRequest
    success: bool
    length: int
    steps: list[DecisionStep]
    frames: list[np.ndarray] | None = None
    #: the env's ``info["metrics"]`` at the episode's end (e.g. a robot's
    #: safety interventions by kind); summed into the iteration's metrics
    metrics: dict[str, float] = attrs.Factory(dict)


class PolicyOutputError(RuntimeError):
    """The policy, not the environment, produced an action that cannot be executed."""


@attrs.define
class RolloutStats:
    episodes: int = 0
    env_steps: int = 0
    policy_calls: int = 0
    policy_samples: int = 0
    discarded_episodes: int = 0
    wall_s: float = 0.0
    policy_s: float = 0.0
    # host wall time inside the policy's submit/act and result (with an
    # asynchronous policy it overlaps the device's work)
    policy_host_s: float = 0.0
    env_wait_s: float = 0.0
    env_busy_s: float = 0.0  # summed over workers, timed inside them
    # what an env waits for between its reply and its next chunk, summed
    # over policy calls / group turns (the pipelined schedule's critical
    # path: env chunk + absorb + latency, docs/benchmarks.md):
    #: from a call's submit to its chunks sent (host work, queue, device)
    policy_latency_s: float = 0.0
    #: from a group's last reply to its first submit (observation adapters)
    absorb_s: float = 0.0
    #: the slowest env's reply time minus the mean, per group turn: what a
    #: group waits for its last env
    env_straggle_s: float = 0.0
    group_turns: int = 0
    n_workers: int = 1
    pipeline_groups: int = 1
    failures: list[str] = attrs.Factory(list)
    # (batch size, seconds) of every policy call: what the planner's
    # inference-cost model is fitted to (planner.InferenceCost.fit)
    policy_call_times: list[tuple[int, float]] = attrs.Factory(list)

    @property
    def env_steps_per_s(self) -> float:
        return self.env_steps / self.wall_s if self.wall_s else 0.0

    @property
    def policy_calls_per_s(self) -> float:
        return self.policy_calls / self.wall_s if self.wall_s else 0.0

    @property
    def mean_batch(self) -> float:
        return self.policy_samples / self.policy_calls if self.policy_calls else 0.0

    @property
    def batch_occupancy(self) -> float:
        """Mean fraction of the env workers served by each policy call."""
        return self.mean_batch / self.n_workers if self.n_workers else 0.0

    @property
    def policy_busy_frac(self) -> float:
        """Fraction of the wall time the policy (its device) was computing.

        A call that reports its device time (``PendingOutput.device_s``, the
        CUDA actor) counts that; otherwise the wall time around ``act``,
        which returns host arrays, so a GPU's queued work is included.
        Lock-step leaves it idle while envs step; the pipelined schedule
        aims at 1 when the policy is the bottleneck.
        """
        return self.policy_s / self.wall_s if self.wall_s else 0.0

    @property
    def env_busy_frac(self) -> float:
        """Fraction of the wall time an average env worker spent in reset/step."""
        if not self.wall_s or not self.n_workers:
            return 0.0
        return self.env_busy_s / (self.n_workers * self.wall_s)

    def as_metrics(self, prefix: str = "rollout/") -> dict[str, float]:
        return {
            f"{prefix}episodes": self.episodes,
            f"{prefix}env_steps": self.env_steps,
            f"{prefix}env_steps_per_s": self.env_steps_per_s,
            f"{prefix}policy_calls_per_s": self.policy_calls_per_s,
            f"{prefix}mean_batch": self.mean_batch,
            f"{prefix}batch_occupancy": self.batch_occupancy,
            f"{prefix}policy_time_frac": self.policy_s / self.wall_s if self.wall_s else 0.0,
            f"{prefix}policy_host_frac": self.policy_host_s / self.wall_s if self.wall_s else 0.0,
            f"{prefix}env_wait_frac": self.env_wait_s / self.wall_s if self.wall_s else 0.0,
            f"{prefix}policy_busy_frac": self.policy_busy_frac,
            f"{prefix}env_busy_frac": self.env_busy_frac,
            f"{prefix}policy_latency_ms": 1e3 * self.policy_latency_s / max(1, self.policy_calls),
            f"{prefix}pipeline_groups": self.pipeline_groups,
            f"{prefix}discarded_episodes": self.discarded_episodes,
        }


def decision_seed(episode_seed: int, decision: int) -> int:
    """A per-decision seed that depends only on the episode, never on batching."""
    return int(np.random.SeedSequence([episode_seed, decision]).generate_state(1)[0])


@attrs.define
class _Live:
    request: EpisodeRequest
    task: TaskInfo
    obs_adapter: ObservationAdapter
    act_adapter: ActionAdapter
    steps: list[DecisionStep] = attrs.Factory(list)
    length: int = 0
    frames: list[np.ndarray] | None = None
    pending_input: PolicyInput | None = None


class RolloutRunner:
    """Runs episodes on an env pool with one batched policy.

    ``replan_every``: actions executed per chunk before re-querying (openpi
    LIBERO uses 5 of 50). ``max_steps``: overrides the catalogue's per-task
    budget when set. ``env_options``: passed to the backend's env factory.
    ``max_batch``: the most observations per policy call (the plan's
    ``inference_batch``, chosen so that one forward fits the device); more
    waiting envs are split over several calls. ``None``: one call for all.
    ``pipeline_groups``: G, the number of worker groups stepped while the
    policy serves another group (the plan's choice; 1 = lock-step). More
    groups than workers leave groups empty, so G is capped at the pool size.
    ``on_episode``: called with each finished rollout as soon as it ends,
    before its worker starts the next episode (the episode journal writes it
    to disk there).
    """

    def __init__(
        self,
        policy: ChunkPolicy,
        pool: EnvPool,
        *,
        replan_every: int = 5,
        max_steps: int | None = None,
        env_options: dict[str, Any] | None = None,
        record_frames: bool = False,
        max_restarts_per_episode: int = 3,
        on_batch: Callable[[int], None] | None = None,
        max_batch: int | None = None,
        pipeline_groups: int = 1,
        on_episode: Callable[[Rollout], None] | None = None,
    ) -> None:
        if replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {replan_every}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if pipeline_groups < 1:
            raise ValueError(f"pipeline_groups must be >= 1, got {pipeline_groups}")
        self.policy = policy
        self.pool = pool
        self.replan_every = replan_every
        self.max_steps = max_steps
        self.env_options = tuple(sorted((env_options or {}).items()))
        self.record_frames = record_frames
        self.max_restarts_per_episode = max_restarts_per_episode
        self.on_batch = on_batch
        self.max_batch = max_batch
        self.pipeline_groups = min(pipeline_groups, pool.n)
        self.on_episode = on_episode
        self._adapters: dict[tuple[str, str], tuple[ObservationAdapter, ActionAdapter]] = {}

    def _adapters_for(self, backend: str, task: str) -> tuple[ObservationAdapter, ActionAdapter]:
        key = (backend, task)
        if key not in self._adapters:
            self._adapters[key] = get_registry().default_adapters(
                backend, task, dict(self.env_options)
            )
        return self._adapters[key]

    def run(self, requests: Sequence[EpisodeRequest]) -> tuple[list[Rollout], RolloutStats]:
        reg = get_registry()
        # validate every context before any worker does slow work
        tasks = {(r.backend, r.task): reg.task_info(r.backend, r.task) for r in requests}
        for r in requests:
            n = tasks[(r.backend, r.task)].n_init_states
            if not 0 <= r.init_state < n:
                raise ValueError(f"{r.backend}/{r.task}: init_state {r.init_state} not in [0, {n})")

        n_groups = self.pipeline_groups
        # strided, so that a pool whose size G does not divide still gets
        # groups that differ by at most one worker
        groups = [list(range(g, self.pool.n, n_groups)) for g in range(n_groups)]
        announce = getattr(self.policy, "expect_batch_sizes", None)
        if announce is not None:
            announce(round_batch_sizes(self.pool.n, n_groups, self.max_batch))
        stats = RolloutStats(n_workers=self.pool.n, pipeline_groups=n_groups)
        queue: deque[EpisodeRequest] = deque(requests)
        restarts: dict[int, int] = {}
        live: dict[int, _Live] = {}
        done: list[Rollout] = []
        t_start = time.perf_counter()

        def start(worker: int) -> None:
            req = queue.popleft()
            task = tasks[(req.backend, req.task)]
            obs_adapter, act_adapter = self._adapters_for(req.backend, req.task)
            live[worker] = _Live(req, task, obs_adapter, act_adapter)
            self.pool.send(
                worker,
                ResetCommand(
                    req.backend,
                    req.task,
                    req.init_state,
                    req.seed,
                    self.env_options,
                    task.settle_steps,
                    task.noop_action,
                    self.record_frames,
                ),
            )

        for worker in range(self.pool.n):
            if queue:
                start(worker)

        calls: deque[_Call] = deque()  # submitted, not yet delivered, oldest first
        while live or calls:
            for group in groups:
                if not any(w in live for w in group):
                    continue
                # only this group's replies: the other groups go on stepping
                replies = self._collect_group(group, calls, live, stats)
                t_in = time.perf_counter()
                busy = [r.busy_s for _, r in replies if not isinstance(r, WorkerFailure)]
                if busy:
                    stats.env_straggle_s += max(busy) - sum(busy) / len(busy)
                    stats.group_turns += 1
                for worker, reply in replies:
                    state = live.pop(worker)
                    if isinstance(reply, WorkerFailure):
                        self._requeue(state.request, reply, queue, restarts, stats)
                    else:
                        stats.env_busy_s += reply.busy_s
                        finished = self._absorb(state, reply, stats)
                        if finished is not None:
                            if self.on_episode is not None:
                                self.on_episode(finished)
                            done.append(finished)
                        else:
                            live[worker] = state
                    if worker not in live and queue:
                        start(worker)
                waiting = [w for w in group if w in live and live[w].pending_input is not None]
                step = self.max_batch or max(1, len(waiting))
                stats.absorb_s += time.perf_counter() - t_in
                for i in range(0, len(waiting), step):
                    calls.append(self._submit(waiting[i : i + step], live))
                # restarted workers whose episode was re-queued need new work
                for worker in group:
                    if worker not in live and queue:
                        start(worker)
            # Not after every round: the next round's groups land the calls in
            # flight as they wait for their envs. Draining here made group 1's
            # envs, already answered, wait for the last group's call every
            # round (the CPU stub schedule: 16 % slower, tests/rollout/
            # test_pipelining.py).
            if not live:  # a call's envs are live, so this is only a safety net
                while calls:
                    self._deliver(calls.popleft(), live, stats)

        stats.wall_s = time.perf_counter() - t_start
        stats.episodes = len(done)
        done.sort(key=lambda r: r.request.episode_id)
        return done, stats

    def _requeue(self, req, failure, queue, restarts, stats) -> None:
        restarts[req.episode_id] = restarts.get(req.episode_id, 0) + 1
        stats.discarded_episodes += 1
        msg = (
            f"episode {req.episode_id} ({req.backend}/{req.task} init {req.init_state}) "
            f"discarded: worker {failure.worker} {failure.reason}"
        )
        stats.failures.append(msg)
        log.warning("%s; re-queued", msg)
        if restarts[req.episode_id] > self.max_restarts_per_episode:
            raise RuntimeError(
                f"{msg}; it failed {restarts[req.episode_id]} times in a row, giving up "
                "(raise max_restarts_per_episode or fix the backend)"
            )
        queue.appendleft(req)

    def _absorb(self, state: _Live, reply: StepResult, stats: RolloutStats) -> Rollout | None:
        req = state.request
        validate_observation(reply.obs, req.backend)
        if reply.frames is not None:
            state.frames = (state.frames or []) + list(reply.frames)
        if state.steps:
            state.steps[-1].n_executed = reply.n_steps
        state.length += reply.n_steps
        stats.env_steps += reply.n_steps
        budget = self.max_steps or state.task.max_steps
        if reply.success or reply.terminated or reply.truncated or state.length >= budget:
            return Rollout(
                req,
                reply.success,
                state.length,
                state.steps,
                state.frames,
                dict(reply.metrics or {}),
            )
        state.pending_input = state.obs_adapter(reply.obs)
        return None

    def _collect_group(
        self,
        group: list[int],
        calls: deque[_Call],
        live: dict[int, _Live],
        stats: RolloutStats,
    ) -> list[tuple[int, Any]]:
        """Every reply of ``group``'s outstanding workers. While waiting, the
        policy calls in flight that land are delivered at once: their envs
        must not wait for this group's."""
        members = set(group)
        out: list[tuple[int, Any]] = []
        while True:
            while calls and calls[0].pending.ready():
                self._deliver(calls.popleft(), live, stats)
            # a worker whose chunk is still in flight cannot answer: land its call
            while any(members.intersection(c.workers) for c in calls):
                self._deliver(calls.popleft(), live, stats)
            if not members.intersection(self.pool.outstanding):
                # in worker order, not arrival order: the episodes that
                # finish together take the next requests in a fixed order
                return sorted(out, key=lambda r: r[0])
            t0 = time.perf_counter()
            out += self.pool.collect(
                wait_all=True, only=group, max_wait_s=POLL_S if calls else None
            )
            stats.env_wait_s += time.perf_counter() - t0

    def _submit(self, workers: list[int], live: dict[int, _Live]) -> _Call:
        inputs = [live[w].pending_input for w in workers]
        seeds = [decision_seed(live[w].request.seed, len(live[w].steps)) for w in workers]
        t0 = time.perf_counter()
        submit = getattr(self.policy, "submit", None)
        pending = (
            submit(inputs, seeds) if submit is not None else _Done(self.policy.act(inputs, seeds))
        )
        return _Call(workers, pending, time.perf_counter() - t0, t0)

    def _deliver(self, call: _Call, live: dict[int, _Live], stats: RolloutStats) -> None:
        """Wait for ``call`` if needed and send each of its envs its chunk."""
        t0 = time.perf_counter()
        out = call.pending.result()
        host = call.host_s + time.perf_counter() - t0
        device = getattr(call.pending, "device_s", None)
        busy = host if device is None else device
        workers = call.workers
        stats.policy_s += busy
        stats.policy_host_s += host
        stats.policy_call_times.append((len(workers), busy))
        stats.policy_calls += 1
        stats.policy_samples += len(workers)
        if self.on_batch is not None:
            self.on_batch(len(workers))
        states = [live[w] for w in workers]
        for worker, state, chunk, record in zip(
            workers, states, out.actions, out.records, strict=True
        ):
            budget = (self.max_steps or state.task.max_steps) - state.length
            k = min(self.replan_every, budget, len(chunk))
            executed = np.asarray(chunk[:k])
            if not np.isfinite(executed).all():
                raise PolicyOutputError(
                    f"the policy produced a non-finite action (NaN/inf) for "
                    f"{state.request.backend}/{state.request.task} init state "
                    f"{state.request.init_state}: its weights or inputs are non-finite. Likely "
                    "cause: a learning rate too high (optim.lr), a gradient clip that is not a "
                    "positive number (update.max_grad_norm) or policy.noise_level; go back to an "
                    "earlier checkpoint"
                )
            env_actions = state.act_adapter(executed)
            state.steps.append(DecisionStep(state.pending_input, record))
            state.pending_input = None
            self.pool.send(worker, StepCommand(env_actions, self.record_frames))
        stats.policy_latency_s += time.perf_counter() - call.submitted_at
