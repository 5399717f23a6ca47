"""Shared LIBERO fixtures: ONE real env (64 px) for the whole session.

Creating a LIBERO env costs 5-10 s and a reset 2-5 s on a 2-core CPU, so
tests share the env and each starts with its own ``reset``.
"""

from __future__ import annotations

import pytest

from tests.plugins.backend_contract import host_fixture

# a libero_goal task: its scene has fixtures (cabinet, stove) placed from
# np.random at reset, the trap the backend's seeding must close
TASK = "libero_goal.put_the_wine_bottle_on_top_of_the_cabinet"
IMAGE_SIZE = 64
ENV_OPTIONS = {"image_size": IMAGE_SIZE}


def require_libero() -> None:
    pytest.importorskip("ript_libero", reason='ript-core installed without ".[libero]"')
    pytest.importorskip("libero.libero", reason='LIBERO missing: pip install -e ".[libero]"')


libero_host = host_fixture("libero", TASK, ENV_OPTIONS, require_libero)


@pytest.fixture
def libero_env(libero_host):
    return libero_host.env.unwrapped
