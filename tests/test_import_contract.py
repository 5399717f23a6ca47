"""The house rules, checked over the import graph (docs/architecture.md).

Every ``import`` / ``from ... import`` in the source is read with ``ast``
(module level and inside functions alike: a lazy import is still a
dependency), resolved to an absolute module name, and held against the rules:

- core (``ript_core``) never imports a backend plugin;
- a plugin imports only ``ript_core``'s public API (``from ript_core import X``);
- the policy never imports envs, rollout, plan, rl, debug, serve or the CLI;
- the env side never imports the policy, rollout, plan, rl, serve or the CLI;
- nothing below the CLI imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = {
    "ript_libero": ROOT / "plugins" / "libero" / "ript_libero",
    "ript_maniskill": ROOT / "plugins" / "maniskill" / "ript_maniskill",
    "ript_gridworld": ROOT / "docs" / "examples" / "ript-plugin-gridworld" / "ript_gridworld",
}
PLUGIN_PACKAGES = {name: path for name, path in PLUGIN_PACKAGES.items() if path.is_dir()}

# package prefix -> packages it must not import (prefixes of absolute module names);
# the CLI rule holds for every package and is checked on its own
FORBIDDEN = {
    "ript_core.policy": (
        "ript_core.envs",
        "ript_core.rollout",
        "ript_core.plan",
        "ript_core.rl",
        "ript_core.debug",
        "ript_core.serve",
    ),
    "ript_core.envs": (
        "ript_core.policy",
        "ript_core.rollout",
        "ript_core.plan",
        "ript_core.rl",
        "ript_core.serve",
    ),
    "ript_core.plan": ("ript_core.rollout", "ript_core.rl"),
    "ript_core.rollout": ("ript_core.rl",),
}


def module_name(path: Path, package_root: Path) -> str:
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """Absolute names of everything ``path`` imports, with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            yield prefix, node.lineno
            for alias in node.names:  # `from ript_core import cli` imports a module too
                yield f"{prefix}.{alias.name}", node.lineno


def sources(package_root: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(package_root.rglob("*.py")):
        yield path, module_name(path, package_root)


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def public_api() -> set[str]:
    """The names in ``ript_core.__all__`` (read from the source, not imported)."""
    tree = ast.parse((ROOT / "ript_core" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return {ast.literal_eval(e) for e in node.value.elts}
    raise AssertionError("ript_core/__init__.py defines no __all__")


def violations() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"core": [], "plugins": [], "layers": []}
    core = ROOT / "ript_core"
    for path, module in sources(core):
        rel = path.relative_to(ROOT)
        for name, line in imports_of(path, module):
            if any(under(name, p) for p in PLUGIN_PACKAGES):
                found["core"].append(f"{rel}:{line} imports plugin module {name}")
            below_cli = not under(module, "ript_core.cli") and module != "ript_core.__main__"
            if under(name, "ript_core.cli") and below_cli:
                found["layers"].append(f"{rel}:{line} imports the CLI ({name})")
            for pkg, banned in FORBIDDEN.items():
                if under(module, pkg):
                    for b in banned:
                        if under(name, b):
                            found["layers"].append(f"{rel}:{line} ({pkg}) imports {name}")
    public = public_api()
    for root in PLUGIN_PACKAGES.values():
        for path, module in sources(root):
            rel = path.relative_to(ROOT)
            for name, line in imports_of(path, module):
                # `from ript_core import X` yields "ript_core" and "ript_core.X"
                internal = name.count(".") > 1 or name.split(".")[-1] not in public
                if under(name, "ript_core") and name != "ript_core" and internal:
                    found["plugins"].append(f"{rel}:{line} imports ript_core internals: {name}")
    return found


@pytest.mark.parametrize("rule", ["core", "plugins", "layers"])
def test_import_rules_hold(rule):
    bad = violations()[rule]
    assert not bad, "import rule broken:\n  " + "\n  ".join(bad)


def test_the_checker_catches_a_broken_rule(tmp_path):
    # the checker itself: a policy module that imports the env side is caught
    pkg = tmp_path / "ript_core" / "policy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    bad = pkg / "bad.py"
    bad.write_text("def f():\n    from ..envs import interfaces\n")
    names = [n for n, _ in imports_of(bad, module_name(bad, tmp_path / "ript_core"))]
    assert "ript_core.envs" in names and "ript_core.envs.interfaces" in names
    assert any(under(n, "ript_core.envs") for n in names)
