"""RIPT on the robot backend end to end: ``ript train`` with the tiny policy
against the digital twin served by ``ript robot serve`` in another process,
over the real link on loopback, the operator's answers scripted on stdin.
Then a kill -9 mid-iteration and ``--resume``: the recorded episodes are not
asked for again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ript_real_robot.config import TWIN_DEFAULT

from ript_core import structure
from ript_core.config import dump_config
from ript_core.rl.config import TrainConfig
from ript_core.rl.rollout_setup import within_backend_limits
from tests.plugins.real_robot.conftest import require_twin
from tests.plugins.real_robot.link import served_robot

MAX_STEPS = 4
PROMPT_SCENE, PROMPT_LABEL = "then press Enter", "success? [y]es"


def train_config(run_dir: Path, iterations: int) -> TrainConfig:
    return structure(TrainConfig, {
        "run_dir": str(run_dir), "seed": 1, "torch_threads": 1,
        "policy": {"preset": "pi0-tiny", "action_dim": 4, "state_dim": 14, "max_state_dim": 16,
                   "logp_horizon": 2, "logp_action_dims": 4},
        "env": {"backend": "real_robot", "tasks": ["pick_cube"], "train_init_states": "0:2",
                "eval_init_states": "2:3", "replan_every": 2,
                "options": {"episodes_dir": str(run_dir / "robot_episodes")}},
        # no rollout section: the backend's declaration decides (one env, this process)
        "ript": {"iterations": iterations, "group_size": 2, "groups_per_iteration": 1,
                 "max_sampling_rounds": 1, "oversample": 1.0},
        "update": {"ppo_epochs": 1, "micro_batch": 8},
        "eval": {"episodes_per_init_state": 1},
        "checkpoint_every": 1, "tensorboard": False,
    })  # fmt: skip


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    """The twin served in another process; the operator confirms scenes as on a real arm."""
    require_twin()
    folder = tmp_path_factory.mktemp("robot")
    served = folder / "served.yaml"
    served.write_text(
        yaml.safe_dump({**TWIN_DEFAULT, "driver": {"kind": "twin", "twin_sets_scenes": False}})
    )
    with served_robot(served, watchdog_s=2.0) as url:
        client = folder / "client.yaml"
        tasks = [
            {**TWIN_DEFAULT["tasks"][0], "max_steps": MAX_STEPS, "scenes": ["left", "right", "far"]}
        ]
        client.write_text(yaml.safe_dump({**TWIN_DEFAULT, "tasks": tasks,
                                          "driver": {"kind": "network", "url": url}}))  # fmt: skip
        yield client


def ript_train(cfg_path: Path, robot: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, RIPT_ROBOT_CONFIG=str(robot), NO_PROXY="127.0.0.1,localhost")
    return subprocess.Popen(
        [sys.executable, "-m", "ript_core", "train", str(cfg_path), "--quiet", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def answers(labels: str) -> str:
    """Enter for each scene, then the label."""
    return "".join(f"\n{x}\n" for x in labels)


def test_the_spec_decides_the_rollout_layout(robot, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RIPT_ROBOT_CONFIG", str(robot))
    monkeypatch.setenv("COLUMNS", "200")
    cfg = within_backend_limits(train_config(tmp_path, 1))
    assert (cfg.rollout.n_workers, cfg.rollout.in_process_envs) == (0, 1)
    from ript_core.cli import main

    assert main(["tasks", "real_robot"]) == 0  # the operator's scenes are not exact init states
    assert "3 (not exact)" in capsys.readouterr().out


def test_a_ript_iteration_on_the_served_twin_then_kill_9_and_resume(robot, tmp_path):
    run = tmp_path / "run"
    cfg_path = tmp_path / "train.yaml"
    dump_config(train_config(run, iterations=2), cfg_path)
    # eval before (1 episode), iteration 1 (one group of 2: a success and a
    # failure, so the group is kept), iteration 2 (2), eval after (1)
    proc = ript_train(cfg_path, robot)
    proc.stdin.write(answers("n" + "yn" + "ny" + "n"))
    proc.stdin.flush()
    journal = run / "episodes"
    deadline = time.time() + 300
    while time.time() < deadline:  # iteration 1 done (2 episodes), iteration 2's first recorded
        if journal.is_dir() and len(list(journal.glob("*.pkl"))) == 3:
            break
        if proc.poll() is not None:
            pytest.fail(f"ript train ended early: {proc.communicate()}")
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the run never recorded 3 training episodes")
    os.kill(proc.pid, signal.SIGKILL)
    _, first_err = proc.communicate()
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    it1 = next(m for m in metrics if m["iteration"] == 1)
    assert it1["ript/kept_groups"] == 1 and it1["train/success_rate"] == 0.5
    assert it1["update/optimizer_steps"] >= 1
    assert first_err.count(PROMPT_LABEL) >= 4  # eval, 2 of iteration 1, 1 of iteration 2

    # resume: iteration 2's recorded episode is taken from disk; the operator
    # is asked only for the episode not yet run and the final evaluation
    resumed = ript_train(cfg_path, robot, "--resume")
    out, err = resumed.communicate(answers("y" + "n"), timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert err.count(PROMPT_LABEL) == 2 and err.count(PROMPT_SCENE) == 2
    assert "taken from the journal" in err
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    it2 = [m for m in metrics if m["iteration"] == 2 and "train/episodes" in m][-1]
    assert it2["train/episodes"] == 2 and it2["train/success_rate"] == 0.5  # n (recorded) + y
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 2
    # the robot's own records: every episode, each labelled once
    from ript_real_robot.recorder import read_episode

    outcomes = [
        read_episode(f)[0]["outcome"] for f in sorted((run / "robot_episodes").glob("*.npz"))
    ]
    assert sorted(outcomes) == ["failure"] * 4 + ["success"] * 2
