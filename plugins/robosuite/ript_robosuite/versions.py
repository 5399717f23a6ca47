"""Which robosuite releases the backend supports, read without importing robosuite.

1.4.x is what LIBERO pins (so ``[libero,robosuite]`` co-install); 1.5.x is
what new robosuite users have. They differ in the controller API
(``load_controller_config`` vs ``load_composite_controller_config``) and in
where the scene's randomness comes from (global ``np.random`` vs
``env.rng`` and the placement samplers' own generators).
"""

from __future__ import annotations

import importlib.metadata

SUPPORTED = ("1.4", "1.5")
REQUIREMENT = "robosuite>=1.4,<1.6"


class UnsupportedRobosuiteError(RuntimeError):
    """The installed robosuite is a release this backend was not written for."""


def installed() -> str | None:
    """The installed robosuite's version string, or None."""
    try:
        return importlib.metadata.version("robosuite")
    except importlib.metadata.PackageNotFoundError:
        return None


def series(version: str) -> str:
    """``"1.5.2"`` -> ``"1.5"``."""
    return ".".join(version.split(".")[:2])


def unsupported_reason(version: str | None = None) -> str | None:
    """Why the installed (or given) robosuite cannot be used, or None."""
    version = installed() if version is None else version
    if version is None or series(version) in SUPPORTED:
        return None
    return (
        f"robosuite {version} is not supported; the robosuite backend supports "
        f"{' and '.join(s + '.x' for s in SUPPORTED)} "
        f'(pip install "{REQUIREMENT}"; 1.4.0 if LIBERO shares the environment)'
    )


def require_supported() -> str:
    """The installed robosuite's series (``"1.4"`` or ``"1.5"``), or
    :class:`UnsupportedRobosuiteError` naming the supported ones."""
    version = installed()
    if version is None:
        raise UnsupportedRobosuiteError(f'robosuite is not installed: pip install "{REQUIREMENT}"')
    reason = unsupported_reason(version)
    if reason is not None:
        raise UnsupportedRobosuiteError(reason)
    return series(version)
