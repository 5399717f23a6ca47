"""The README's two commands stay true: each works on its own on a fresh
clone, they share `.venv` when run in turn, and CI runs the test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [c.strip() for c in re.findall(r"```bash\n(python3 -m venv .*?)\n```", text)]


def test_the_readme_has_the_two_commands_each_complete_on_its_own():
    demo, tests = _commands()[:2]
    for cmd in (demo, tests):
        steps = [s.strip() for s in cmd.split("&&")]
        assert steps[0] == "python3 -m venv .venv"  # the same environment for both
        # the CPU wheel before anything that depends on torch (an unpinned torch is CUDA)
        assert steps[1] == ".venv/bin/pip install torch==2.13.0"
        assert steps[2].startswith(".venv/bin/pip install -e ")
    assert demo.endswith(".venv/bin/ript demo")
    assert tests.endswith(".venv/bin/python -m pytest")


def test_ci_installs_what_the_readme_test_command_installs_and_runs_it():
    tests = _commands()[1]
    extras = re.search(r'pip install -e "\.\[([a-z_,-]+)\]"', tests).group(1)
    ci = (ROOT / ".ci" / "run").read_text()
    assert f'pip install --quiet -e ".[{extras}]"' in ci
    assert "pip install --quiet torch==2.13.0" in ci
    assert ".venv/bin/python -m pytest" in ci
    # the test extras cover every optional package the suite imports
    assert "test" in extras.split(",")


def test_every_package_of_the_readme_test_extras_is_installed():
    """A plugin's tests skip when its simulator is missing; the README's test
    command installs every extra it names, so here a missing package means
    the install went wrong (an old pip once ignored an extra's spelling)
    and whole suites would pass by skipping."""
    from importlib import metadata

    from packaging.requirements import Requirement

    extras = re.search(r'pip install -e "\.\[([a-z_,-]+)\]"', _commands()[1]).group(1).split(",")
    missing = []
    for line in metadata.requires("ript-core") or []:
        req = Requirement(line)
        wanted = [e for e in extras if req.marker is not None and req.marker.evaluate({"extra": e})]
        if not wanted:
            continue
        try:
            metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(f"{req.name} (extra {wanted[0]})")
    assert missing == [], f"not installed: {missing}; rerun the README's test command"
