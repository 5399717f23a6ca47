"""Commands that answer at once (issue 31): ``ript --help``, ``ript plugins``,
``ript tasks toy`` and a config error import neither torch nor transformers.

Each runs in a fresh interpreter (this test process has torch loaded already).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# runs `ript ARGS...` through main() and reports its exit status and what was imported
PROBE = """
import json, sys
from ript_core.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print("\\nPROBE " + json.dumps({"rc": rc, "heavy": heavy}))
"""


def probe(*args: str, cwd=None) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.rstrip().splitlines()[-1]
    assert line.startswith("PROBE "), proc.stdout + proc.stderr
    return json.loads(line.removeprefix("PROBE ")), proc.stdout


@pytest.mark.parametrize(
    ("args", "rc", "says"),
    [
        (["--help"], 0, "demos"),
        (["plugins"], 0, "toy"),
        (["tasks", "toy"], 0, "pick up the yellow block"),
    ],
)
def test_listing_commands_import_no_torch(args, rc, says):
    result, out = probe(*args)
    assert result == {"rc": rc, "heavy": []}
    assert says in out


def test_config_errors_are_reported_before_torch_is_imported(tmp_path):
    missing, out = probe("train", str(tmp_path / "missing.yaml"))
    assert missing == {"rc": 2, "heavy": []}
    assert "missing.yaml" in out

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("ript:\n  group_size: 4\n  nosuch_key: 1\n")
    result, out = probe("train", str(unknown))
    assert result == {"rc": 2, "heavy": []}
    assert "nosuch_key" in out

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("ript:\n  group_size: 1\n")
    result, out = probe("train", str(invalid))
    assert result == {"rc": 2, "heavy": []}
    assert "ript.group_size must be >= 2" in out
