"""Shared robosuite fixtures: ONE real env (32 px, Lift) for the session.

Creating a robosuite env costs ~3-6 s on a 2-core CPU and every rendered
step ~0.1-0.2 s, so tests share the env and each starts with its own reset.
"""

from __future__ import annotations

import pytest

from tests.plugins.backend_contract import host_fixture

TASK = "Lift"
IMAGE_SIZE = 32
ENV_OPTIONS = {"image_size": IMAGE_SIZE}


def require_robosuite() -> None:
    pytest.importorskip("ript_robosuite", reason='ript-core installed without ".[robosuite]"')
    pytest.importorskip("robosuite", reason='robosuite missing: pip install -e ".[robosuite]"')


robosuite_host = host_fixture("robosuite", TASK, ENV_OPTIONS, require_robosuite)


@pytest.fixture
def robosuite_env(robosuite_host):
    return robosuite_host.env.unwrapped
