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
