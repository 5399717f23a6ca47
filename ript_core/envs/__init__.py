"""The env side of ript-core: the backend contract (:class:`BackendSpec`),
task catalogues, adapters, observation checks, env wrappers, the conformance
check and the built-in ``toy`` backend."""

from typing import Any

from ript_core.envs.conformance import BackendCheckError, check_backend
from ript_core.envs.spec import BackendFootprint, BackendSpec, Expert

__all__ = [
    "BackendCheckError",
    "BackendFootprint",
    "BackendSpec",
    "Expert",
    "SettleOnReset",
    "check_backend",
]


def __getattr__(name: str) -> Any:
    # the wrappers import gymnasium: not on the path of `ript plugins` and friends
    if name == "SettleOnReset":
        from ript_core.envs.wrappers import SettleOnReset

        return SettleOnReset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
