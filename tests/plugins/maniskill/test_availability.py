"""Without ManiSkill the plugin still loads and says how to install it."""

from __future__ import annotations

import pytest

from tests.plugins.backend_contract import report_without

pytest.importorskip(
    "ript_maniskill", reason="ript-core installed without the maniskill entry point"
)


def test_unavailable_report_names_the_install_line_when_mani_skill_is_absent():
    report_without("mani_skill", "maniskill", 'make_env("maniskill", "PickCube")')
