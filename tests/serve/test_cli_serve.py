"""``ript serve``'s argument errors come before torch is imported."""

from __future__ import annotations

import pytest

from tests.test_cli_instant import probe


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--max-batch", "0"], "--max-batch must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--port", "70000"], "--port must be in [0, 65535]"),
    ],
)
def test_bad_arguments_are_refused_before_torch_is_imported(tmp_path, args, says):
    result, out = probe("serve", str(tmp_path), *args)
    assert result == {"rc": 2, "heavy": []}
    assert says in " ".join(out.split())


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    from ript_core.cli import main

    assert main(["serve", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert "is not a directory" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("choice", "origin", "expected"),
    [
        ("auto", "openpi:pi0_libero", "libero"),
        ("auto", "openpi:pi0_libero_low_mem_finetune", "libero"),
        ("auto", "ript", "ript"),
        ("auto", "lerobot", "ript"),
        ("auto", "pi0_libero", "ript"),  # a name alone is no openpi origin
        ("ript", "openpi:pi0_libero", "ript"),
        ("libero", "ript", "libero"),
    ],
)
def test_auto_inputs_follow_the_checkpoints_pipeline(choice, origin, expected):
    from ript_core.cli.serve import _input_format

    assert _input_format(choice, origin) == expected
