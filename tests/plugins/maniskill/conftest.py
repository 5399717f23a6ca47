"""Shared ManiSkill fixtures: ONE real rendering env (32 px) for the session.

Building a ManiSkill env costs 4-9 s on a 2-core CPU (a render costs ~35 ms
per camera per step whatever the size), so tests share the env and each
starts with its own ``reset``.
"""

from __future__ import annotations

import os

import pytest

from tests.plugins.backend_contract import host_fixture

TASK = "PickCube"
IMAGE_SIZE = 32
ENV_OPTIONS = {"image_size": IMAGE_SIZE}
LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json"


def require_maniskill() -> None:
    pytest.importorskip("ript_maniskill", reason='ript-core installed without ".[maniskill]"')
    pytest.importorskip("mani_skill", reason='ManiSkill missing: pip install -e ".[maniskill]"')
    # SAPIEN picks a Vulkan driver through the loader; on this CPU-only image
    # that is lavapipe (.ci/setup-vulkan installs it, .ci/run exports this too)
    if not os.environ.get("VK_ICD_FILENAMES") and os.path.isfile(LAVAPIPE_ICD):
        os.environ["VK_ICD_FILENAMES"] = LAVAPIPE_ICD


maniskill_host = host_fixture("maniskill", TASK, ENV_OPTIONS, require_maniskill)


@pytest.fixture
def maniskill_env(maniskill_host):
    return maniskill_host.env.unwrapped
