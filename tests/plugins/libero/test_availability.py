"""Without LIBERO the plugin still loads and says how to install it."""

from __future__ import annotations

import pytest

pytest.importorskip("ript_libero", reason="ript-core installed without the libero entry point")

from tests.plugins.backend_contract import report_without  # noqa: E402


def test_plugin_reports_unavailable_with_the_install_line_when_libero_is_absent():
    report_without("libero", "libero", 'catalogue("libero")')
