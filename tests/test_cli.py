from ript_core.cli import main


def test_plugins_lists_toy_with_its_task_count(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if " toy " in line)
    assert "4" in row and "available" in row


def test_tasks_and_unknown_backend(capsys):
    assert main(["tasks", "toy"]) == 0
    assert "pick up the yellow block" in capsys.readouterr().out
    assert main(["tasks", "nosuch"]) == 2
    assert "no backend named 'nosuch'" in capsys.readouterr().out


def test_expert_command_prints_success_rate(capsys):
    assert main(["expert", "--episodes-per-task", "5"]) == 0
    assert "scripted expert success rate: 100.0% (20/20)" in capsys.readouterr().out


def test_help_lists_every_command(capsys):
    # a "%" in a command's help text (e.g. "95% confidence") once crashed `ript --help`
    import pytest

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "95%" in out and "demos" in out


def test_eval_takes_the_training_runs_env_options_and_step_budget(tmp_path, capsys, monkeypatch):
    # `ript eval` must be able to reproduce a run's evaluation conditions
    # (env.options, env.max_steps)
    from ript_core.policy import PI0Policy, save_policy
    from ript_core.rollout import runner

    seen = {}
    init = runner.RolloutRunner.__init__

    def spy(self, *args, **kwargs):
        seen.update(max_steps=kwargs.get("max_steps"), env_options=kwargs.get("env_options"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(runner.RolloutRunner, "__init__", spy)
    policy = PI0Policy.from_preset("pi0-tiny", seed=0, action_dim=3, state_dim=3)
    save_policy(policy, tmp_path / "policy")
    common = [str(tmp_path / "policy"), "--tasks", "reach-red", "--init-states", "0:2"]
    common += ["--workers", "0"]
    assert main(["eval", *common, "--max-steps", "3", "--option", "image_size=32"]) == 0
    assert seen == {"max_steps": 3, "env_options": {"image_size": 32}}
    assert "/2" in capsys.readouterr().out
    # the options reach the backend's env factory, which refuses unknown ones
    assert main(["eval", *common, "--option", "nosuch=1"]) != 0
    assert "unknown env options ['nosuch']" in " ".join(capsys.readouterr().out.split())


def test_eval_threads_pins_torch_and_refuses_nonsense(tmp_path, capsys):
    import torch

    from ript_core.policy import PI0Policy, save_policy

    save_policy(
        PI0Policy.from_preset("pi0-tiny", seed=0, action_dim=3, state_dim=3), tmp_path / "p"
    )
    before = torch.get_num_threads()
    common = [str(tmp_path / "p"), "--tasks", "reach-red", "--init-states", "0:1", "--workers", "0"]
    try:
        assert main(["eval", *common, "--max-steps", "2", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["eval", *common, "--threads", "0"]) != 0
    assert "--threads must be >= 1" in " ".join(capsys.readouterr().out.split())


def test_expert_takes_the_backend_by_name(capsys):
    assert main(["expert", "toy", "--episodes-per-task", "2"]) == 0
    out = capsys.readouterr().out
    assert "toy/reach-red: 2/2" in out and "(8/8)" in out
    assert main(["expert", "nosuch"]) == 2
    assert "no backend named 'nosuch'" in capsys.readouterr().out


def test_record_demos_and_its_old_name_write_the_same_demo_file(capsys, tmp_path):
    """`ript record-demos` (clearly not `ript demo`) and its first name `demos`
    run one command: the same episodes, the same file, loadable for BC."""
    import numpy as np

    from ript_core.rl.demos import load_demos

    args = ["toy/reach-red", "-n", "3", "--init-states", "5:", "--noise", "0.1"]
    assert main(["record-demos", *args, "-o", str(tmp_path / "a.npz")]) == 0
    assert "3/3 expert episodes succeeded" in capsys.readouterr().out
    assert main(["demos", *args, "-o", str(tmp_path / "b.npz")]) == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key
    demos, meta = load_demos(tmp_path / "a.npz", chunk=2)
    assert meta["init_states"] == [5, 6, 7] and meta["noise"] == 0.1 and len(demos) > 0
