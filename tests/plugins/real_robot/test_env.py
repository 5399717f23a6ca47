"""The robot env on the digital twin, in this process: the backend contract,
the operator protocol with scripted answers, episode records, discards."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from ript_real_robot.config import load_robot_config
from ript_real_robot.operator import Operator, OperatorGone
from ript_real_robot.recorder import read_episode

from ript_core import EpisodeDiscarded, check_backend, get_registry
from tests.plugins.real_robot.conftest import require_twin

TASK = "pick_cube"


@pytest.fixture(scope="module")
def twin_stack():
    require_twin()
    from ript_real_robot.stack import build_stack

    stack = build_stack(load_robot_config())
    yield stack
    stack.close()


def make_env(stack, tmp_path, answers: str, **kw):
    from ript_real_robot.env import RealRobotEnv

    cfg = load_robot_config()
    cfg.tasks[0].max_steps = kw.pop("max_steps", 3)
    out = io.StringIO()
    env = RealRobotEnv(cfg, TASK, episodes_dir=tmp_path, operator=Operator(io.StringIO(answers), out),
                       stack=stack, **kw)  # fmt: skip
    return env, out


def test_catalogue_declares_one_robot_and_operator_prompts():
    spec = get_registry().spec("real_robot")
    assert (spec.max_env_workers, spec.operator_prompts, spec.journal_episodes) == (1, True, True)
    (info,) = get_registry().catalogue("real_robot")
    assert (info.name, info.n_init_states, info.exact_reset) == (TASK, 20, True)  # the twin's
    with pytest.raises(ValueError, match="episodes_dir"):
        spec.check_options({})


def test_twin_keeps_the_backend_contract(twin_stack, tmp_path):
    # the detector labels: conformance steps must not wait for an operator
    env, _ = make_env(twin_stack, tmp_path, "", success="detector", max_steps=60)
    problems = check_backend(
        "real_robot", TASK, {"episodes_dir": str(tmp_path)}, env=env, raise_errors=False
    )
    assert problems == []


def test_operator_labels_each_episode_and_every_episode_is_recorded(twin_stack, tmp_path):
    env, out = make_env(twin_stack, tmp_path, "maybe\ny\nn\n")
    outcomes = []
    for _ in range(2):
        env.reset(seed=5, options={"init_state": 1})
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0, -1.0, 1.0]))
        outcomes.append((reward, terminated, truncated, info["success"]))
    assert outcomes == [(1.0, True, False, True), (0.0, False, True, False)]
    assert "answer y, n or t" in out.getvalue()  # "maybe" was asked again
    files = sorted(tmp_path.glob("*.npz"))
    assert [read_episode(f)[0]["outcome"] for f in files] == ["success", "failure"]
    meta, arrays = read_episode(files[0])
    assert (meta["scene"], meta["seed"], meta["labelled_by"], meta["steps"]) == (
        "cube_01",
        5,
        "operator",
        3,
    )
    assert arrays["frames_front"].shape == (4, 64, 64, 3) and arrays["states"].shape == (4, 14)
    # every action asked for 3.5 cm (1.41 units * 2.5 cm), above the 2 cm step limit
    assert meta["safety_counts"] == {"step_limit": 3}


def test_took_over_and_link_loss_discard_the_episode(twin_stack, tmp_path):
    env, _ = make_env(twin_stack, tmp_path, "t\n")
    env.reset(seed=1, options={"init_state": 0})
    env.step(np.zeros(4))
    env.step(np.zeros(4))
    with pytest.raises(EpisodeDiscarded, match="took over"):
        env.step(np.zeros(4))
    (f,) = tmp_path.glob("*.npz")
    assert read_episode(f)[0]["outcome"] == "discarded"
    env.reset(seed=1, options={"init_state": 0})
    with pytest.raises(OperatorGone, match="stdin closed"):  # no answer left
        for _ in range(3):
            env.step(np.zeros(4))


def test_dry_run_computes_checks_and_logs_actions_but_never_sends_them(tmp_path):
    require_twin()
    env, _ = make_env(None, tmp_path, "n\n", dry_run=True)
    try:
        twin = env.stack.raw
        obs, _ = env.reset(seed=0, options={"init_state": 0})
        for action in ([1.0, 0.0, -1.0, 1.0], [np.nan, 0.0, 0.0, 1.0], [0.2, 0.0, 0.0, 3.0]):
            obs2, *_, info = env.step(np.array(action))
        assert twin.actions_executed == 0  # the simulated arm never moved
        np.testing.assert_array_equal(obs2["state"], obs["state"])
        meta, arrays = read_episode(next(tmp_path.glob("*.npz")))
        assert meta["dry_run"] is True
        checked = arrays["actions_checked"]
        # 3.5 cm asked, 2 cm let through; the NaN dropped; the grasp clamped to 1
        np.testing.assert_allclose(
            checked[0], [0.8 / np.sqrt(2), 0, -0.8 / np.sqrt(2), 1], rtol=1e-6
        )
        assert np.isnan(checked[1]).all()
        np.testing.assert_allclose(checked[2], [0.2, 0, 0, 1])
        assert info["metrics"] == {
            "safety/clamp": 1,
            "safety/non_finite": 1,
            "safety/step_limit": 1,
        }
    finally:
        env.close()


def test_robot_check_reads_everything_and_moves_nothing(capsys):
    require_twin()
    from ript_core.cli import main

    assert main(["robot", "check", "--reads", "3"]) == 0
    out = capsys.readouterr().out
    assert "robot so101-twin: connected" in out and "camera front: 64x64 uint8" in out
    assert "reading: 3 reads" in out and "watchdog_s: 1.0" in out
    assert "'actions_executed': 0" in out and out.rstrip().endswith("nothing was sent to the robot")


def test_ctrl_c_mid_episode_stops_the_arm_and_voids_the_episode(twin_stack, tmp_path):
    import os
    import signal

    from ript_real_robot.estop import EmergencyStopped

    env, _ = make_env(twin_stack, tmp_path, "")
    stops = twin_stack.raw.stops
    env.reset(seed=0, options={"init_state": 0})  # installs the e-stop's signal handlers
    # what it replaced: Python's default, or SIG_IGN in a process started in the
    # background by a shell without job control (as CI may run)
    before = twin_stack.estop._previous[signal.SIGINT]
    assert before in (signal.default_int_handler, signal.SIG_IGN)
    env.step(np.zeros(4))
    try:
        with pytest.raises(EmergencyStopped, match="SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
            time.sleep(1)
        assert twin_stack.raw.stops > stops  # stopped before anything else ran
        with pytest.raises(EmergencyStopped, match="engaged"):
            env.step(np.zeros(4))  # nothing moves again
        (f,) = tmp_path.glob("*.npz")
        assert read_episode(f)[0]["outcome"] == "discarded"
        assert read_episode(f)[0]["reason"] == "emergency stop"
    finally:
        twin_stack.estop.uninstall()
        twin_stack.estop.engaged.clear()  # the module's shared stack goes on
    assert signal.getsignal(signal.SIGINT) is before  # uninstall restores what was there


def lifted_above_start(reading) -> bool:
    """A stand-in success detector: the end effector rose 1 cm above its start."""
    return float(reading.state[13]) > 0.2265 + 0.01


def test_a_pluggable_success_detector_ends_the_episode_without_asking(twin_stack, tmp_path):
    from ript_real_robot.env import RealRobotEnv

    cfg = load_robot_config()
    cfg.success, cfg.success_detector = "detector", f"{__name__}:lifted_above_start"
    env = RealRobotEnv(cfg, TASK, episodes_dir=tmp_path, stack=twin_stack,
                       operator=Operator(io.StringIO(""), io.StringIO()))  # fmt: skip
    env.reset(seed=0, options={"init_state": 0})
    steps = 0
    terminated = False
    while not terminated and steps < 10:
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 0.5, 1.0]))
        steps += 1
    assert terminated and info["success"] and obs["state"][13] > 0.2365
    assert 1 < steps < 10  # 1.25 cm a step: not at once, well before the task's 60 steps
    meta = read_episode(next(tmp_path.glob("*success.npz")))[0]
    assert meta["labelled_by"] == "detector" and meta["steps"] == steps
