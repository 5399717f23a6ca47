"""Without robosuite the plugin still loads and says how to install it; a
robosuite release it was not written for is refused naming the supported ones."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "ript_robosuite", reason="ript-core installed without the robosuite entry point"
)

from ript_robosuite import plugin, versions  # noqa: E402

from ript_core import get_registry  # noqa: E402
from tests.plugins.backend_contract import report_without  # noqa: E402


def test_unavailable_report_names_the_install_line_when_robosuite_is_absent():
    report_without("robosuite", "robosuite", 'make_env("robosuite", "Lift")')


@pytest.mark.parametrize("version", ["1.3.1", "1.6.0", "2.0.0"])
def test_an_unsupported_release_is_refused_naming_the_supported_ones(monkeypatch, version):
    monkeypatch.setattr(versions, "installed", lambda: version)
    a = plugin.availability()
    assert not a.available
    assert a.reason == (
        f"robosuite {version} is not supported; the robosuite backend supports 1.4.x and 1.5.x "
        '(pip install "robosuite>=1.4,<1.6"; 1.4.0 if LIBERO shares the environment)'
    )
    assert a.install == 'pip install "robosuite>=1.4,<1.6"'
    # building an env directly (a worker, a script) fails the same way, before robosuite loads
    from ript_robosuite.env import RobosuiteEnv

    with pytest.raises(versions.UnsupportedRobosuiteError, match=f"robosuite {version} is not"):
        RobosuiteEnv("Lift", image_size=32)


@pytest.mark.parametrize("version", ["1.4.0", "1.5.2"])
def test_both_supported_series_pass(monkeypatch, version):
    monkeypatch.setattr(versions, "installed", lambda: version)
    assert versions.unsupported_reason() is None
    assert versions.require_supported() == version[:3]


def test_the_catalogue_lists_what_the_backend_promises():
    tasks = {t.name: t for t in get_registry().catalogue("robosuite")}
    assert {n: (t.instruction, t.max_steps, t.n_init_states) for n, t in tasks.items()} == {
        "Lift": ("lift the red cube", 80, 1000),
        "Stack": ("stack the red cube on top of the green cube", 160, 1000),
        "PickPlaceCan": (
            "put the red can in the right bin's compartment marked with a can",
            300,
            1000,
        ),
        "NutAssemblySquare": ("put the square nut on the square peg", 300, 1000),
        "Door": ("turn the handle and open the door", 200, 1000),
    }
    for t in tasks.values():
        assert (t.settle_steps, t.noop_action) == (5, (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0))
