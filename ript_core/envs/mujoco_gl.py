"""Offscreen OpenGL for MuJoCo-based backends (LIBERO, robosuite, ...).

A public helper module (``from ript_core import mujoco_gl``): every plugin
that renders with MuJoCo needs the same three things, written once here.

1. :func:`select_backend` -- choose MuJoCo's offscreen GL backend before
   mujoco/robosuite are imported. They pick their GL platform from
   ``MUJOCO_GL`` (and PyOpenGL from ``PYOPENGL_PLATFORM``) once, at import
   time, so the choice is made before a process builds its first env:

   - ``MUJOCO_GL`` set by the user: that backend, or an error if it cannot render;
   - unset: ``egl`` (GPU drivers, or Mesa's software EGL on CPU machines), then
     ``osmesa`` (pure software);
   - neither works: an error that names the system packages to install.

   "Works" means a 8x8 frame really renders, checked in a short subprocess: a
   failed GL initialisation can leave a process unable to try another backend.
2. :func:`missing_library_reason` -- the cheap check for a spec's
   ``availability()`` (loads the shared library, renders nothing).
3. :func:`close_at_exit` -- close live envs before robosuite's EGL display is
   terminated, so that interpreter exit prints no ``EGLError`` tracebacks.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Callable, MutableMapping
from typing import Any

DEFAULT_ORDER = ("egl", "osmesa")
# Set once a backend was probed successfully; worker processes inherit it
# and skip the probe.
PROBED_VAR = "RIPT_MUJOCO_GL_OK"

LIBRARIES = {
    "egl": ("libEGL.so.1", "libEGL.so"),
    "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),
}

INSTALL_HINT = (
    "install an offscreen OpenGL: EGL with Mesa's software driver "
    "(Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri; on an NVIDIA "
    "machine the driver's EGL library, libnvidia-gl) and run with MUJOCO_GL=egl, or OSMesa "
    "(apt-get install libosmesa6) with MUJOCO_GL=osmesa"
)

_PROBE = textwrap.dedent(
    """
    import mujoco
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><light pos='0 0 1'/>"
        "<geom type='sphere' size='.1' rgba='1 0 0 1'/></worldbody></mujoco>"
    )
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, 8, 8)
    renderer.update_scene(data)
    frame = renderer.render()
    renderer.close()
    assert frame.shape == (8, 8, 3) and frame.max() > 0, "rendered an empty frame"
    """
)


class RenderingUnavailableError(RuntimeError):
    """No MuJoCo offscreen rendering backend works on this machine."""


def library_present(backend: str) -> bool:
    """Whether the shared library ``backend`` needs can be loaded (no GL call)."""
    for name in LIBRARIES.get(backend, ()):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def missing_library_reason(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Why no GL backend can work here (its library is absent), or None.

    For a spec's ``availability()``: loads shared libraries only, renders
    nothing. A ``MUJOCO_GL`` this module does not know (``glfw``, ...) is the
    user's business and passes.
    """
    environ = os.environ if environ is None else environ
    requested = environ.get("MUJOCO_GL", "").strip().lower()
    if requested and requested not in LIBRARIES:
        return None
    backends = (requested,) if requested else DEFAULT_ORDER
    if any(library_present(b) for b in backends):
        return None
    return f"no offscreen OpenGL library for MUJOCO_GL={requested or 'egl/osmesa'}"


def gl_environ(backend: str, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables that make MuJoCo, robosuite and PyOpenGL use ``backend``."""
    env = dict(os.environ if environ is None else environ)
    env["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        # robosuite's EGL context refuses to start when PyOpenGL is set to
        # another platform, and PyOpenGL would otherwise guess GLX.
        env["PYOPENGL_PLATFORM"] = backend
    return env


def probe(backend: str, timeout_s: float = 120.0) -> str | None:
    """Render one frame with ``backend`` in a subprocess: ``None`` if it works,
    else a one-line reason."""
    if backend in LIBRARIES and not library_present(backend):
        return f"{' / '.join(LIBRARIES[backend])} not found"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=gl_environ(backend),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"rendering a test frame took more than {timeout_s:.0f} s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"probe exited with code {proc.returncode}"
    return None


def select_backend(
    environ: MutableMapping[str, str] | None = None,
    prober: Callable[[str], str | None] = probe,
    who: str = "MuJoCo",
) -> str:
    """Choose the GL backend and write it into ``environ`` (default ``os.environ``).

    Must run before mujoco/robosuite are imported in this process; once they
    are, the backend they picked is kept (it cannot change any more).
    ``who`` names the backend in the error (``"LIBERO"``, ``"robosuite"``).
    """
    environ = os.environ if environ is None else environ
    requested = environ.get("MUJOCO_GL", "").strip().lower()
    if requested and environ.get(PROBED_VAR) == requested:
        return requested
    if environ is os.environ and ("mujoco" in sys.modules or "robosuite" in sys.modules):
        return requested or "glfw"
    candidates = (requested,) if requested else DEFAULT_ORDER
    reasons = {}
    for backend in candidates:
        reason = prober(backend)
        if reason is None:
            environ.update(gl_environ(backend, environ))
            environ[PROBED_VAR] = backend
            return backend
        reasons[backend] = reason
    tried = "; ".join(f"MUJOCO_GL={b}: {r}" for b, r in reasons.items())
    if requested:
        raise RenderingUnavailableError(
            f"{who} cannot render with MUJOCO_GL={requested} ({tried}). Unset MUJOCO_GL to "
            f"let ript try egl then osmesa, or {INSTALL_HINT}"
        )
    raise RenderingUnavailableError(
        f"{who} needs offscreen rendering and no MuJoCo GL backend works here ({tried}); "
        f"{INSTALL_HINT}"
    )


_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def _close_live() -> None:
    for env in list(_LIVE):
        env.close()


def close_at_exit(env: Any) -> None:
    """Close ``env`` (anything with ``close()``) at interpreter exit, before
    robosuite's EGL display is terminated.

    robosuite registers ``eglTerminate`` with ``atexit`` when it creates its
    first GL context (robosuite 1.4/1.5 do that lazily, at the first render);
    a context still alive after that fails to free itself and prints an
    ``EGLError`` traceback at interpreter exit (rollout workers exit without
    closing their env). ``atexit`` runs handlers last-in first-out, so call
    this once the env's GL context exists (after its first render): each call
    moves the handler behind everything registered before it.
    """
    _LIVE.add(env)
    atexit.unregister(_close_live)
    atexit.register(_close_live)
