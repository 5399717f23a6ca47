import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests run on 2-core CI machines; more threads only add contention.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


def load_bench_script(name: str) -> ModuleType:
    """``bench/<name>.py`` imported as a module (bench/ is no package; what
    the scripts share lives in :mod:`ript_core.bench`)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_bench():
    """The :func:`load_bench_script` loader, for a test module's own fixture."""
    return load_bench_script
