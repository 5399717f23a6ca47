"""Without LIBERO the plugin still loads and says how to install it; the GL
backend choice (egl, then osmesa) and its error."""

from __future__ import annotations

import pytest

pytest.importorskip("ript_libero", reason="ript-core installed without the libero entry point")

from ript_libero import rendering  # noqa: E402

from tests.plugins.backend_contract import report_without  # noqa: E402


def test_plugin_reports_unavailable_with_the_install_line_when_libero_is_absent():
    report_without("libero", "libero", 'catalogue("libero")')


def test_gl_backend_is_egl_then_osmesa_and_the_error_names_the_packages():
    tried = []

    def prober(works):
        def probe(backend):
            tried.append(backend)
            return None if backend in works else f"{backend} is broken"

        return probe

    env: dict[str, str] = {}
    assert rendering.select_backend(env, prober({"egl", "osmesa"})) == "egl"
    assert env["MUJOCO_GL"] == env["PYOPENGL_PLATFORM"] == "egl" and tried == ["egl"]

    tried.clear()
    env = {}
    assert rendering.select_backend(env, prober({"osmesa"})) == "osmesa"
    assert (env["MUJOCO_GL"], env["PYOPENGL_PLATFORM"], tried) == (
        "osmesa",
        "osmesa",
        ["egl", "osmesa"],
    )

    tried.clear()
    env = {"MUJOCO_GL": "osmesa"}  # the user's choice is the only one tried
    with pytest.raises(rendering.RenderingUnavailableError) as err:
        rendering.select_backend(env, prober({"egl"}))
    assert tried == ["osmesa"] and "MUJOCO_GL=osmesa: osmesa is broken" in str(err.value)

    with pytest.raises(rendering.RenderingUnavailableError) as err:
        rendering.select_backend({}, prober(set()))
    msg = str(err.value)
    for needle in ("MUJOCO_GL=egl: egl is broken", "MUJOCO_GL=osmesa: osmesa is broken"):
        assert needle in msg
    for package in ("libegl1", "libgl1-mesa-dri", "libosmesa6"):
        assert package in msg

    # a probed backend is not probed again (worker processes inherit the marker)
    tried.clear()
    env = {"MUJOCO_GL": "egl", rendering.PROBED_VAR: "egl"}
    assert rendering.select_backend(env, prober(set())) == "egl" and tried == []


def test_the_real_probe_reports_a_missing_library_without_rendering(monkeypatch):
    monkeypatch.setitem(rendering.LIBRARIES, "osmesa", ("libOSMesa-not-here.so.99",))
    assert rendering.probe("osmesa") == "libOSMesa-not-here.so.99 not found"
    # this machine image renders with EGL (Mesa's software driver): CI relies on it
    assert rendering.probe("egl") is None
