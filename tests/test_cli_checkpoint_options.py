"""Every command that loads a checkpoint takes ``--tokenizer`` (and the other
loading options): openpi's converted checkpoints ship without a tokenizer."""

from __future__ import annotations

import pytest

from ript_core.cli import main
from ript_core.cli.app import build_parser
from ript_core.policy import PI0Policy, load_policy, save_policy
from ript_core.policy.io.tokenizer import JSON_FILE, SP_FILE, prompt_ids
from tests.policy.test_pipeline import libero_pipeline_policy, write_openpi_checkpoint


def _commands_with_a_checkpoint() -> dict[str, set[str]]:
    """command -> the dests of its options, for commands that take a checkpoint."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    out = {}
    for name, p in sub.choices.items():
        dests = {a.dest for a in p._actions}
        if "checkpoint" in dests:
            out[name] = dests
    return out


def test_every_command_that_loads_a_checkpoint_takes_the_loading_options():
    commands = _commands_with_a_checkpoint()
    assert {"info", "convert", "eval", "export", "record"} <= set(commands)
    for name, dests in commands.items():
        assert {"tokenizer", "openpi_config"} <= dests, name


def _saved_tokenizer(policy: PI0Policy, directory):
    directory.mkdir()
    policy.tokenizer.save(directory)
    return directory


def _without_tokenizer(directory) -> None:
    for name in (SP_FILE, JSON_FILE):
        (directory / name).unlink(missing_ok=True)


def test_info_on_openpis_layout_without_a_tokenizer(tmp_path, capsys):
    source = libero_pipeline_policy(seed=1)
    write_openpi_checkpoint(source, tmp_path / "openpi")
    _saved_tokenizer(source, tmp_path / "tok")
    _without_tokenizer(tmp_path / "openpi")
    args = ["info", str(tmp_path / "openpi"), "--preset", "pi0-tiny", "--openpi-config"]
    args.append("pi0_libero")
    assert main(args) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "no tokenizer.model / tokenizer.json in the checkpoint" in out
    assert "--tokenizer PATH" in out
    assert main([*args, "--tokenizer", str(tmp_path / "tok")]) == 0
    assert "openpi layout, pipeline from openpi:pi0_libero" in capsys.readouterr().out
    assert main([*args, "--tokenizer", str(tmp_path / "nosuch.model")]) == 2
    assert "--tokenizer" in capsys.readouterr().out


def test_convert_takes_the_tokenizer_it_is_given(tmp_path):
    source = libero_pipeline_policy(seed=1)
    write_openpi_checkpoint(source, tmp_path / "openpi")
    _saved_tokenizer(source, tmp_path / "tok")
    _without_tokenizer(tmp_path / "openpi")
    args = ["convert", str(tmp_path / "openpi"), str(tmp_path / "ript"), "--preset", "pi0-tiny"]
    args += ["--openpi-config", "pi0_libero", "--tokenizer", str(tmp_path / "tok" / JSON_FILE)]
    assert main(args) == 0
    converted = load_policy(tmp_path / "ript")
    prompt = "put the bowl on the plate"
    assert prompt_ids(converted.tokenizer, prompt) == prompt_ids(source.tokenizer, prompt)


@pytest.mark.parametrize("command", ["eval", "export"])
def test_eval_and_export_take_a_tokenizer(command, tmp_path, capsys):
    policy = PI0Policy.from_preset("pi0-tiny", seed=0, action_dim=3, state_dim=3)
    save_policy(policy, tmp_path / "ckpt")
    _saved_tokenizer(policy, tmp_path / "tok")
    _without_tokenizer(tmp_path / "ckpt")
    args = {
        "eval": ["eval", str(tmp_path / "ckpt"), "--workers", "0", "--tasks", "reach-red"]
        + ["--init-states", "0", "--max-steps", "2"],
        "export": ["export", "--merge", str(tmp_path / "ckpt"), str(tmp_path / "out")],
    }[command]
    assert main(args) == 2
    assert "--tokenizer PATH" in " ".join(capsys.readouterr().out.split())
    assert main([*args, "--tokenizer", str(tmp_path / "tok")]) == 0
