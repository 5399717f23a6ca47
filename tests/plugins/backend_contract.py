"""What every real backend's tests share, written once: the session env owned
by a rollout worker's ``EnvHost``, the two-worker rollout through the runner,
the "simulator missing" report and the example plugin's install. The contract
itself (catalogue, reproducible resets, trajectories, adapters, options,
expert) is ``ript_core.check_backend``; each backend's own tests call it and
keep only what is particular to that backend."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ript_core import get_registry

MAX_STEPS, REPLAN = 8, 4


def host_fixture(backend: str, task: str, options: dict[str, Any], require: Callable[[], None]):
    """A session fixture: a rollout-worker ``EnvHost`` (what each worker process
    runs) owning one env of ``task``, shared by the backend's tests (each starts
    with its own reset: the backend's promise that a reset does not depend on
    history is what makes that safe, and ``check_backend`` checks it)."""

    @pytest.fixture(scope="session")
    def host():
        require()
        from ript_core.rollout.workers import EnvHost, ResetCommand

        host = EnvHost()
        host.handle(ResetCommand(backend, task, 0, 0, tuple(options.items())))
        yield host
        host.env.close()

    return host


def two_worker_rollout(
    host,
    backend: str,
    task: str,
    options: dict[str, Any],
    image_size: int,
    *,
    torch_free_workers: bool = True,
):
    """Three episodes through the rollout runner on 2 worker processes with the
    tiny PI0 policy (episode 2 = episode 0's context on another worker after
    another history); checks what holds for every backend and returns the
    three rollouts for the backend's own checks. ``torch_free_workers``: the
    simulator itself does not import torch, so a worker holding one proves
    that no model came along."""
    from ript_core.policy import PI0Policy
    from ript_core.rl.actor import PI0Actor
    from ript_core.rollout.runner import EpisodeRequest, RolloutRunner
    from ript_core.rollout.workers import ProcessEnvPool, ResetCommand

    info = get_registry().task_info(backend, task)
    policy = PI0Policy.from_preset(
        "pi0-tiny", prompts=[info.instruction], seed=0, action_dim=7, state_dim=8, logp_horizon=4
    )
    requests = [
        EpisodeRequest(0, backend, task, init_state=2, seed=11),
        EpisodeRequest(1, backend, task, init_state=4, seed=12),
        EpisodeRequest(2, backend, task, init_state=2, seed=11),  # = 0, other worker/history
    ]
    with ProcessEnvPool(2, timeout_s=300) as pool:
        runner = RolloutRunner(
            PI0Actor(policy, "sde"),
            pool,
            replan_every=REPLAN,
            max_steps=MAX_STEPS,
            env_options=options,
        )
        rollouts, stats = runner.run(requests)
        if torch_free_workers:  # no model in the env workers
            assert pool.call_all("torch_loaded") == [False, False]
        assert len(set(pool.call_all("pid"))) == 2

    assert stats.episodes == 3 and stats.discarded_episodes == 0 and stats.n_workers == 2
    assert stats.env_steps == 3 * MAX_STEPS
    assert max(stats.mean_batch, 1.0) <= 2.0
    for r in rollouts:
        assert (r.success, r.length) == (False, MAX_STEPS)  # 8 untrained steps cannot succeed
        assert [s.n_executed for s in r.steps] == [REPLAN, REPLAN]
        for s in r.steps:
            assert s.policy_input.state.shape == (8,)
            assert s.policy_input.prompt == info.instruction
            assert {k: v.shape for k, v in s.policy_input.images.items()} == {
                "base_0_rgb": (image_size, image_size, 3),
                "left_wrist_0_rgb": (image_size, image_size, 3),
            }
            assert np.isfinite(s.record["log_prob"])

    # The same context and seed gives the same episode, whichever worker ran it
    # after what: the first observation is the env's alone, bit-identical.
    first, other, again = rollouts
    assert_same_input(first.steps[0].policy_input, again.steps[0].policy_input)
    assert not np.array_equal(first.steps[0].policy_input.state, other.steps[0].policy_input.state)
    # the second decision saw the arm moved by the first chunk
    moved = first.steps[1].policy_input.state[:3] - first.steps[0].policy_input.state[:3]
    assert np.abs(moved).max() > 1e-4

    # The workers' first policy input equals what this process computes itself
    # through a worker's EnvHost: reset, the catalogue's settle steps, adapter.
    env_before = host.env
    reply = host.handle(
        ResetCommand(
            backend, task, 2, 11, tuple(options.items()), info.settle_steps, info.noop_action
        )
    )
    assert host.env is env_before  # same task and options: the env is reused, not rebuilt
    obs_adapter, _ = get_registry().default_adapters(backend, task, options)
    assert_same_input(first.steps[0].policy_input, obs_adapter(reply.obs))
    return rollouts


def assert_same_input(a, b) -> None:
    np.testing.assert_array_equal(a.state, b.state)
    assert a.images.keys() == b.images.keys()
    for slot, img in b.images.items():
        np.testing.assert_array_equal(a.images[slot], img)


# A meta-path finder that makes one top-level module (and its submodules)
# unimportable, the way an environment without the extra looks.
HIDE = textwrap.dedent(
    """
    import sys
    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name == {module!r} or name.startswith({module!r} + "."):
                raise ModuleNotFoundError(f"No module named {{name!r}}")
            return None
    sys.meta_path.insert(0, Hide())
    """
)


def report_without(module: str, backend: str, build: str) -> list[str]:
    """In a fresh interpreter where ``module`` cannot be imported: whether
    ``backend`` is still registered (and not a broken plugin), its
    availability, the error ``build`` (a registry call) raises, then what
    ``ript plugins`` prints. Checks what holds for every backend; returns the
    output's lines."""
    code = f"""
        from ript_core.plugins import get_registry, BackendUnavailableError
        reg = get_registry()
        print({backend!r} in reg.backends(), [b.name for b in reg.broken if b.name == {backend!r}])
        a = reg.availability({backend!r})
        print(a.available, "|", a.reason, "|", a.install)
        try:
            reg.{build}
        except BackendUnavailableError as exc:
            print("raised:", exc)
        from ript_core.cli import main
        main(["plugins"])
        """
    proc = subprocess.run(
        [sys.executable, "-c", HIDE.format(module=module) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "True []"  # the plugin loaded (it is not "broken"), the simulator did not
    install = f'pip install "ript-core[{backend}]" (from a clone: pip install -e ".[{backend}]")'
    assert lines[1] == f"False | {module} is not installed | {install}"
    assert lines[2] == f"raised: backend {backend!r} is not available: {module} is not installed"
    assert lines[3] == f"  fix: {install}"
    cli = "\n".join(lines[4:])
    assert f"unavailable: {module} is not installed" in cli
    assert f"fix: {install}" in cli
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines


def install_example_plugin(repo_root: Path, site: Path) -> None:
    """pip-install the example third-party plugin (docs/examples) into ``site``,
    exactly what a user's ``pip install`` leaves behind."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--target", str(site),
            str(repo_root / "docs/examples/ript-plugin-gridworld"),
        ],
        check=True,
        timeout=300,
    )  # fmt: skip


def check_unread_observations(env, action_dim: int) -> None:
    """An env with ``skip_next_observation`` (``ript_core.envs.unread``): a
    skipped step returns the previous images and a current state and success,
    and the steps that render return exactly the frames they would without
    skipping (the rollout worker reads only those)."""
    actions = np.random.default_rng(1).uniform(-1, 1, (6, action_dim)).astype(np.float32)
    env.reset(seed=0, options={"init_state": 4})
    steps = [env.step(a) for a in actions]
    rendered = [step[0] for step in steps]
    previous, _ = env.reset(seed=0, options={"init_state": 4})
    for i, action in enumerate(actions):
        if i not in (2, 5):
            env.skip_next_observation()
        obs, _, _, _, info = env.step(action)
        np.testing.assert_array_equal(obs["state"], rendered[i]["state"])  # always current
        assert info == steps[i][4]
        for cam, image in obs["images"].items():
            expected = rendered[i] if i in (2, 5) else previous
            np.testing.assert_array_equal(image, expected["images"][cam])
        previous = obs
    # the skipped frames were indeed stale: the arm moved
    first = rendered[0]["images"]
    assert any(not np.array_equal(rendered[1]["images"][c], first[c]) for c in first)
    # a reset forgets a skip that no step used
    env.skip_next_observation()
    env.reset(seed=0, options={"init_state": 4})
    obs, *_ = env.step(actions[0])
    for cam, image in obs["images"].items():
        np.testing.assert_array_equal(image, first[cam])
