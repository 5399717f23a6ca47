"""``ript eval`` of a run's checkpoint evaluates what the run trained on and
evaluated: its backend, tasks, held-out init states and env settings."""

from __future__ import annotations

import pytest

from ript_core.cli import main
from ript_core.policy import load_policy
from ript_core.rl.run_checkpoint import latest_checkpoint
from ript_core.rl.trainer import Trainer
from ript_core.rollout import runner
from tests.rl.conftest import tiny_config

TOY_DEFAULTS = {
    "image_size": 64,
    "step_size": 0.08,
    "grasp_radius": 0.07,
    "max_steps": 30,
    "wrist_view": 0.5,
    "block_half": 0.05,
}


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    """The policy of a real (tiny, one-task, 0-iteration) run with non-default env settings."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = tiny_config(
        run_dir,
        env={
            "tasks": ["reach-blue"],
            "eval_init_states": "40:42",
            "options": {"image_size": 32},
            "replan_every": 3,
            "max_steps": 6,
        },
        eval={"mode": "sde"},
        ript={"iterations": 0},
        bc={"demos_per_task": 1, "steps": 1},
    )
    with Trainer(cfg, progress=False) as trainer:
        trainer.run()
    return latest_checkpoint(run_dir) / "policy"


@pytest.fixture
def runner_settings(monkeypatch):
    """What each eval hands its rollout runner."""
    seen = {}
    init = runner.RolloutRunner.__init__

    def spy(self, policy, *args, **kwargs):
        seen.update(mode=policy.mode, **kwargs)
        init(self, policy, *args, **kwargs)

    monkeypatch.setattr(runner.RolloutRunner, "__init__", spy)
    return seen


def table_rows(out: str) -> dict[str, str]:
    """task -> "successes/episodes" of the evaluation table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and "/" in parts[1] and parts[1].split("/")[0].isdigit():
            rows[parts[0]] = parts[1]
    return rows


def test_the_checkpoint_carries_its_runs_env(run_checkpoint):
    policy = load_policy(run_checkpoint)
    assert policy.training_env == {
        "backend": "toy",
        "tasks": ["reach-blue"],
        "train_init_states": "0:10",
        "eval_init_states": "40:42",
        "options": {**TOY_DEFAULTS, "image_size": 32},
        "replan_every": 3,
        "max_steps": 6,
        "eval_mode": "sde",
    }


def test_eval_defaults_to_the_runs_tasks_and_env_settings(run_checkpoint, runner_settings, capsys):
    assert main(["eval", str(run_checkpoint), "--workers", "0"]) == 0
    raw = capsys.readouterr().out
    out = " ".join(raw.split())
    assert runner_settings["mode"] == "sde"
    assert runner_settings["replan_every"] == 3 and runner_settings["max_steps"] == 6
    assert runner_settings["env_options"] == {**TOY_DEFAULTS, "image_size": 32}
    # one task, the two held-out init states: not the backend's 4 tasks x 200
    rows = table_rows(raw)
    assert set(rows) == {"reach-blue", "all"} and rows["all"].endswith("/2")
    assert "the 1 the checkpoint was trained on" in out
    assert "init states: 40:42 -- the run's held-out env.eval_init_states" in out
    assert "warning" not in out


def test_eval_warns_where_the_command_line_differs_from_training(
    run_checkpoint, runner_settings, capsys
):
    args = ["eval", str(run_checkpoint), "--workers", "0", "--init-states", "40"]
    args += ["--max-steps", "4", "--option", "image_size=48", "--mode", "sde"]
    assert main(args) == 0
    raw = capsys.readouterr().out
    out = " ".join(raw.split())
    assert runner_settings["max_steps"] == 4 and runner_settings["replan_every"] == 3
    assert runner_settings["env_options"] == {**TOY_DEFAULTS, "image_size": 48}
    assert "warning: --max-steps 4 differs from the training run's env.max_steps (6)" in out
    assert "warning: --option image_size=48 differs from the training run's env.options " in out
    assert "--mode" not in out  # the same as training's: no warning
    assert table_rows(raw)["all"].endswith("/1")


def test_eval_tasks_alone_means_every_task(run_checkpoint, capsys):
    args = ["eval", str(run_checkpoint), "--workers", "0", "--init-states", "40", "--tasks"]
    assert main([*args, "--max-steps", "6"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"reach-red", "reach-green", "reach-blue", "reach-yellow", "all"}


def test_eval_of_a_checkpoint_without_a_training_env_says_so(tmp_path, capsys):
    from ript_core.policy import PI0Policy, save_policy

    save_policy(PI0Policy.from_preset("pi0-tiny", seed=0, action_dim=3, state_dim=3), tmp_path)
    args = ["eval", str(tmp_path), "--workers", "0", "--init-states", "0", "--max-steps", "2"]
    assert main(args) == 0
    raw = capsys.readouterr().out
    out = " ".join(raw.split())
    assert "the checkpoint records no training env: evaluating every task of 'toy'" in out
    assert len(table_rows(raw)) == 5


@pytest.mark.parametrize("command", ["convert", "export --merge"])
def test_convert_and_export_keep_the_training_env(command, run_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert main([*command.split(), str(run_checkpoint), str(out)]) == 0
    assert load_policy(out).training_env == load_policy(run_checkpoint).training_env is not None


def test_eval_tasks_take_shell_patterns(run_checkpoint, capsys):
    args = ["eval", str(run_checkpoint), "--workers", "0", "--init-states", "40"]
    assert main([*args, "--max-steps", "6", "--tasks", "reach-[rg]*", "reach-blue"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"reach-red", "reach-green", "reach-blue", "all"}
    assert main([*args, "--tasks", "libero_spatial.*"]) == 2
    assert "--tasks 'libero_spatial.*' matches no task" in capsys.readouterr().out
