"""Environment worker processes.

Why our own pool and not ``gymnasium.vector.AsyncVectorEnv``: that class
steps all envs in lock-step with one shared task, auto-resets, and cannot
replace a worker that died or hangs. RIPT needs each worker to reset to an
arbitrary (task, init state), to run a whole action chunk per message (one
round trip per policy call instead of per env step), to rebuild its env only
when the task changes, and to be restarted when it crashes or stalls.

Workers hold a simulator env and nothing else: they never import torch and
never see the policy, so N workers cost N envs of CPU RAM and zero model
copies. The same command protocol runs in-process (``InProcessEnvPool``) for
debugging and for the sequential reference in tests.

One caveat: workers are *spawned*, and spawn re-imports the launching script
(``__main__``) in every worker. ``ript ...`` and ``python -m ript_core`` are
safe, because their main modules import no torch. A script of your own that
imports torch or the policy at module level puts torch into every env worker.
``bench/rollout_scaling.py`` measured 339 MB instead of 43 MB of RSS per toy
worker that way. Import those inside ``main()``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import attrs
import numpy as np

from ript_core.envs.discard import EpisodeDiscarded

log = logging.getLogger(__name__)


@attrs.frozen
class ResetCommand:
    backend: str
    task: str
    init_state: int
    seed: int
    env_options: tuple[tuple[str, Any], ...] = ()
    settle_steps: int = 0
    noop_action: tuple[float, ...] | None = None
    record_frames: bool = False


@attrs.frozen
class StepCommand:
    actions: np.ndarray  # [k, D_env]; executed in order until the episode ends
    record_frames: bool = False


@attrs.frozen
class StepResult:
    obs: dict[str, Any]
    n_steps: int
    terminated: bool
    truncated: bool
    success: bool
    frames: list[np.ndarray] | None = None
    # seconds the worker spent inside reset/step (timed in the worker, so IPC
    # and the main process's own delays are not counted as env work)
    busy_s: float = 0.0
    # the last step's info["metrics"]: counts an env keeps over its episode
    # (a robot's safety interventions); the runner keeps the episode's last
    metrics: dict[str, float] | None = None


@attrs.frozen
class WorkerFailure:
    """The worker died or hung, or its env discarded the episode
    (:class:`~ript_core.envs.discard.EpisodeDiscarded`): run it again."""

    worker: int
    reason: str


class BackendError(RuntimeError):
    """The env raised: a bug in the backend, not a flaky worker. Stops the run."""


# ---- the code that runs inside a worker ---------------------------------------------


class EnvHost:
    """Owns one env; rebuilds it only when (backend, task, options) change."""

    def __init__(self) -> None:
        self.env = None
        self.key: tuple | None = None
        # the env's skip_next_observation (ript_core.envs.unread), if it has one
        self.skip_unread: Callable[[], None] | None = None

    def handle(self, cmd: Any) -> Any:
        if isinstance(cmd, ResetCommand | StepCommand):
            t0 = time.perf_counter()
            result = self.reset(cmd) if isinstance(cmd, ResetCommand) else self.step(cmd)
            return attrs.evolve(result, busy_s=time.perf_counter() - t0)
        if cmd == "torch_loaded":  # lets tests prove no model lives in a worker
            return "torch" in sys.modules
        if cmd == "pid":
            return os.getpid()
        raise ValueError(f"unknown worker command {cmd!r}")

    def adopt(self, env: Any) -> None:
        """Make ``env`` (settle wrapper on) the one this host steps."""
        from ript_core.envs.unread import skipper

        self.env = env
        self.skip_unread = skipper(env)

    def reset(self, cmd: ResetCommand) -> StepResult:
        key = (cmd.backend, cmd.task, cmd.env_options)
        if self.key != key:
            from ript_core.envs.wrappers import SettleOnReset
            from ript_core.plugins import get_registry

            if self.env is not None:
                self.env.close()
            env = get_registry().make_env(cmd.backend, cmd.task, dict(cmd.env_options))
            self.adopt(SettleOnReset(env, cmd.settle_steps, cmd.noop_action))
            self.key = key
        self.env.settle_as(cmd.settle_steps, cmd.noop_action)
        self.env.render_before_settle = cmd.record_frames
        obs, info = self.env.reset(seed=cmd.seed, options={"init_state": cmd.init_state})
        frames = [self.env.reset_frame] if cmd.record_frames else None
        return StepResult(obs, 0, False, False, bool(info.get("success", False)), frames)

    def step(self, cmd: StepCommand) -> StepResult:
        if self.env is None:
            raise RuntimeError("step before reset")
        frames: list[np.ndarray] | None = [] if cmd.record_frames else None
        n = 0
        terminated = truncated = success = False
        obs = None
        info: dict[str, Any] = {}
        # only the chunk's last observation reaches the policy: an env may skip
        # rendering the others (ript_core.envs.unread), unless we film them
        skip = self.skip_unread if frames is None else None
        last = len(cmd.actions) - 1
        for i, action in enumerate(cmd.actions):
            if skip is not None and i < last:
                skip()
            obs, _, terminated, truncated, info = self.env.step(action)
            n += 1
            success = bool(info["success"])
            if frames is not None:
                frames.append(self.env.render())
            if terminated or truncated or success:
                break
        metrics = info.get("metrics")
        return StepResult(obs, n, terminated, truncated, success, frames, metrics=metrics)


def _worker_main(conn: Connection) -> None:
    host = EnvHost()
    while True:
        try:
            cmd = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if cmd == "close":
            return
        try:
            conn.send(("ok", host.handle(cmd)))
        except EpisodeDiscarded as exc:  # the env is fine; only its episode is void
            conn.send(("discarded", f"discarded by the env: {exc}"))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


# ---- pools, seen from the main process ----------------------------------------------


class ProcessEnvPool:
    """``n`` worker processes; ``send`` is asynchronous, ``collect`` gathers replies.

    A worker whose process exits, or that does not answer within
    ``timeout_s``, is killed and replaced; ``collect`` reports a
    :class:`WorkerFailure` for it so the caller can re-queue its episode.
    """

    def __init__(self, n: int, timeout_s: float = 120.0, start_method: str = "spawn") -> None:
        if n < 1:
            raise ValueError(f"need at least one env worker, got {n}")
        self.n = n
        self.timeout_s = timeout_s
        self._ctx = mp.get_context(start_method)
        self._procs: list[Any] = [None] * n
        self._conns: list[Connection] = [None] * n  # type: ignore[list-item]
        self._sent_at: dict[int, float] = {}
        self.restarts = 0
        for i in range(n):
            self._start(i)

    def _start(self, i: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, args=(child,), daemon=True, name=f"ript-env-{i}"
        )
        proc.start()
        child.close()
        self._procs[i], self._conns[i] = proc, parent

    def _restart(self, i: int) -> None:
        proc = self._procs[i]
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        self._conns[i].close()
        self._start(i)
        self.restarts += 1

    def pid(self, i: int) -> int:
        return self._procs[i].pid

    def send(self, i: int, cmd: Any) -> None:
        # a dead worker's pipe is broken: collect() notices and reports it
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conns[i].send(cmd)
        self._sent_at[i] = time.monotonic()

    @property
    def outstanding(self) -> list[int]:
        return sorted(self._sent_at)

    def collect(
        self,
        wait_all: bool = True,
        only: Collection[int] | None = None,
        max_wait_s: float | None = None,
    ) -> list[tuple[int, Any]]:
        """Replies of outstanding workers: all of them (``wait_all``) or at least one.

        ``only``: wait for these workers alone; the others keep working and are
        collected later (the pipelined schedule collects one group at a time).
        ``max_wait_s``: return what has arrived after this long, maybe
        nothing (the runner polls its policy calls in flight meanwhile).
        """
        out: list[tuple[int, Any]] = []
        give_up = None if max_wait_s is None else time.monotonic() + max_wait_s

        def pending() -> dict[int, float]:
            if only is None:
                return self._sent_at
            return {i: t for i, t in self._sent_at.items() if i in only}

        while waiting := pending():
            now = time.monotonic()
            deadline = min(waiting.values()) + self.timeout_s
            if give_up is not None:
                deadline = min(deadline, give_up)
            by_conn = {self._conns[i]: i for i in waiting}
            sentinels = {self._procs[i].sentinel: i for i in waiting}
            ready = wait([*by_conn, *sentinels], timeout=max(deadline - now, 0.0))
            done: set[int] = set()
            for obj in ready:
                i = by_conn.get(obj)
                if i is not None and i not in done:
                    try:
                        status, payload = obj.recv()
                    except (EOFError, OSError):
                        out.append((i, self._fail(i, "worker process died")))
                    else:
                        reply = self._unwrap(i, status, payload)
                        out.append(
                            (i, WorkerFailure(i, payload) if status == "discarded" else reply)
                        )
                        del self._sent_at[i]
                    done.add(i)
            for obj in ready:
                i = sentinels.get(obj)
                if i is not None and i not in done and i in self._sent_at:
                    if self._conns[i].poll():
                        continue  # it answered before exiting; read it next round
                    code = self._procs[i].exitcode
                    out.append((i, self._fail(i, f"worker process exited (code {code})")))
                    done.add(i)
            now = time.monotonic()
            for i, sent in list(waiting.items()):
                if i not in done and now - sent > self.timeout_s:
                    out.append((i, self._fail(i, f"no answer within {self.timeout_s:.0f} s")))
            if out and not wait_all:
                break
            if give_up is not None and now >= give_up:
                break
        return out

    def _fail(self, i: int, reason: str) -> WorkerFailure:
        log.warning("env worker %d: %s; restarting it", i, reason)
        self._sent_at.pop(i, None)
        self._restart(i)
        return WorkerFailure(i, reason)

    @staticmethod
    def _unwrap(i: int, status: str, payload: Any) -> Any:
        if status == "error":
            raise BackendError(f"env worker {i}: the environment raised {payload}")
        return payload

    def call_all(self, cmd: Any) -> list[Any]:
        for i in range(self.n):
            self.send(i, cmd)
        return [r for _, r in sorted(self.collect())]

    def close(self) -> None:
        for i in range(self.n):
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conns[i].send("close")
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()

    def __enter__(self) -> ProcessEnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessEnvPool:
    """The same protocol without processes: commands run when sent."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.restarts = 0
        self._hosts = [EnvHost() for _ in range(n)]
        self._replies: dict[int, Any] = {}

    def send(self, i: int, cmd: Any) -> None:
        try:
            self._replies[i] = self._hosts[i].handle(cmd)
        except EpisodeDiscarded as exc:
            self._replies[i] = WorkerFailure(i, f"discarded by the env: {exc}")
        except Exception as exc:
            raise BackendError(f"env worker {i}: the environment raised {exc!r}") from exc

    @property
    def outstanding(self) -> list[int]:
        return sorted(self._replies)

    def collect(
        self,
        wait_all: bool = True,
        only: Collection[int] | None = None,
        max_wait_s: float | None = None,
    ) -> list[tuple[int, Any]]:
        # commands ran when sent: every reply is here already
        out = sorted((i, r) for i, r in self._replies.items() if only is None or i in only)
        for i, _ in out:
            del self._replies[i]
        return out

    def call_all(self, cmd: Any) -> list[Any]:
        return [self._hosts[i].handle(cmd) for i in range(self.n)]

    def close(self) -> None:
        for host in self._hosts:
            if host.env is not None:
                host.env.close()

    def __enter__(self) -> InProcessEnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EnvPool = ProcessEnvPool | InProcessEnvPool


def make_pool(n_workers: int, timeout_s: float = 120.0) -> EnvPool:
    """``n_workers == 0`` runs one env in this process (debugging, references)."""
    return InProcessEnvPool(1) if n_workers == 0 else ProcessEnvPool(n_workers, timeout_s)


__all__: Sequence[str] = [
    "BackendError",
    "InProcessEnvPool",
    "ProcessEnvPool",
    "ResetCommand",
    "StepCommand",
    "StepResult",
    "WorkerFailure",
    "make_pool",
]
