"""Choosing MuJoCo's offscreen GL backend (egl, then osmesa) and its errors,
shared by the MuJoCo-based backends (``ript_core.mujoco_gl``)."""

from __future__ import annotations

import pytest

from ript_core import mujoco_gl


def test_gl_backend_is_egl_then_osmesa_and_the_error_names_the_packages():
    tried = []

    def prober(works):
        def probe(backend):
            tried.append(backend)
            return None if backend in works else f"{backend} is broken"

        return probe

    env: dict[str, str] = {}
    assert mujoco_gl.select_backend(env, prober({"egl", "osmesa"})) == "egl"
    assert env["MUJOCO_GL"] == env["PYOPENGL_PLATFORM"] == "egl" and tried == ["egl"]

    tried.clear()
    env = {}
    assert mujoco_gl.select_backend(env, prober({"osmesa"})) == "osmesa"
    assert (env["MUJOCO_GL"], env["PYOPENGL_PLATFORM"], tried) == (
        "osmesa",
        "osmesa",
        ["egl", "osmesa"],
    )

    tried.clear()
    env = {"MUJOCO_GL": "osmesa"}  # the user's choice is the only one tried
    with pytest.raises(mujoco_gl.RenderingUnavailableError) as err:
        mujoco_gl.select_backend(env, prober({"egl"}))
    assert tried == ["osmesa"] and "MUJOCO_GL=osmesa: osmesa is broken" in str(err.value)

    with pytest.raises(mujoco_gl.RenderingUnavailableError) as err:
        mujoco_gl.select_backend({}, prober(set()))
    msg = str(err.value)
    for needle in ("MUJOCO_GL=egl: egl is broken", "MUJOCO_GL=osmesa: osmesa is broken"):
        assert needle in msg
    for package in ("libegl1", "libgl1-mesa-dri", "libosmesa6"):
        assert package in msg
    # the error names the backend that asked
    with pytest.raises(mujoco_gl.RenderingUnavailableError, match="^robosuite needs offscreen"):
        mujoco_gl.select_backend({}, prober(set()), who="robosuite")

    # a probed backend is not probed again (worker processes inherit the marker)
    tried.clear()
    env = {"MUJOCO_GL": "egl", mujoco_gl.PROBED_VAR: "egl"}
    assert mujoco_gl.select_backend(env, prober(set())) == "egl" and tried == []


def test_missing_library_reason_checks_the_requested_backend_only(monkeypatch):
    monkeypatch.setitem(mujoco_gl.LIBRARIES, "osmesa", ("libOSMesa-not-here.so.99",))
    assert mujoco_gl.missing_library_reason({"MUJOCO_GL": "osmesa"}) == (
        "no offscreen OpenGL library for MUJOCO_GL=osmesa"
    )
    assert mujoco_gl.missing_library_reason({}) is None  # egl is there
    assert mujoco_gl.missing_library_reason({"MUJOCO_GL": "glfw"}) is None  # the user's choice
    monkeypatch.setitem(mujoco_gl.LIBRARIES, "egl", ("libEGL-not-here.so.99",))
    assert mujoco_gl.missing_library_reason({}) == (
        "no offscreen OpenGL library for MUJOCO_GL=egl/osmesa"
    )


def test_the_real_probe_reports_a_missing_library_without_rendering(monkeypatch):
    monkeypatch.setitem(mujoco_gl.LIBRARIES, "osmesa", ("libOSMesa-not-here.so.99",))
    assert mujoco_gl.probe("osmesa") == "libOSMesa-not-here.so.99 not found"
    # this machine image renders with EGL (Mesa's software driver): CI relies on it
    assert mujoco_gl.probe("egl") is None
