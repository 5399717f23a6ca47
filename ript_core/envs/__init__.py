"""The env side of ript-core: the backend contract (:class:`BackendSpec`),
task catalogues, adapters, observation checks, env wrappers, the conformance
check and the built-in ``toy`` backend."""

from ript_core.envs.conformance import BackendCheckError, check_backend
from ript_core.envs.spec import BackendFootprint, BackendSpec, Expert
from ript_core.envs.wrappers import SettleOnReset

__all__ = [
    "BackendCheckError",
    "BackendFootprint",
    "BackendSpec",
    "Expert",
    "SettleOnReset",
    "check_backend",
]
