"""Without LIBERO the plugin still loads and says how to install it; the GL
backend choice (egl, then osmesa) and its error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ript_libero", reason="ript-core installed without the libero entry point")

from ript_libero import rendering  # noqa: E402

# A meta-path finder that makes `libero` (and only it) unimportable, the way an
# environment without the extra looks, in a fresh interpreter.
HIDE_LIBERO = textwrap.dedent(
    """
    import sys
    class HideLibero:
        def find_spec(self, name, path=None, target=None):
            if name == "libero" or name.startswith("libero."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None
    sys.meta_path.insert(0, HideLibero())
    """
)


def run_without_libero(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HIDE_LIBERO + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="200"),
    )


def test_plugin_reports_unavailable_with_the_install_line_when_libero_is_absent():
    proc = run_without_libero(
        """
        from ript_core.plugins import get_registry, BackendUnavailableError
        reg = get_registry()
        print("libero" in reg.backends(), [b.name for b in reg.broken if b.name == "libero"])
        a = reg.availability("libero")
        print(a.available, "|", a.reason, "|", a.install)
        try:
            reg.catalogue("libero")
        except BackendUnavailableError as exc:
            print("raised:", exc)
        from ript_core.cli import main
        main(["plugins"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "True []"  # the plugin loaded (it is not "broken"), libero did not
    assert lines[1] == 'False | libero is not installed | pip install "ript-core[libero]"'
    assert lines[2] == "raised: backend 'libero' is not available: libero is not installed"
    assert lines[3] == '  fix: pip install "ript-core[libero]"'
    cli = "\n".join(lines[4:])
    assert "unavailable: libero is not installed" in cli
    assert 'fix: pip install "ript-core[libero]"' in cli
    assert "Traceback" not in proc.stdout + proc.stderr


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
