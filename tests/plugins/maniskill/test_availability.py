"""Without ManiSkill the plugin still loads and says how to install it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip(
    "ript_maniskill", reason="ript-core installed without the maniskill entry point"
)

# A meta-path finder that makes `mani_skill` (and only it) unimportable, the way
# an environment without the extra looks, in a fresh interpreter.
HIDE = textwrap.dedent(
    """
    import sys
    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name == "mani_skill" or name.startswith("mani_skill."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None
    sys.meta_path.insert(0, Hide())
    """
)


def test_unavailable_report_names_the_install_line_when_mani_skill_is_absent():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            HIDE
            + textwrap.dedent(
                """
                from ript_core.plugins import get_registry, BackendUnavailableError
                reg = get_registry()
                print("maniskill" in reg.backends(), [b.name for b in reg.broken])
                a = reg.availability("maniskill")
                print(a.available, "|", a.reason, "|", a.install)
                try:
                    reg.make_env("maniskill", "PickCube")
                except BackendUnavailableError as exc:
                    print("raised:", exc)
                from ript_core.cli import main
                main(["plugins"])
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("True ") and "maniskill" not in lines[0].split(" ", 1)[1]
    assert lines[1] == 'False | mani_skill is not installed | pip install "ript-core[maniskill]"'
    assert lines[2] == "raised: backend 'maniskill' is not available: mani_skill is not installed"
    assert lines[3] == '  fix: pip install "ript-core[maniskill]"'
    cli = "\n".join(lines[4:])
    assert "unavailable: mani_skill is not installed" in cli
    assert 'fix: pip install "ript-core[maniskill]"' in cli
    assert "Traceback" not in proc.stdout + proc.stderr
