"""ript-core: RL post-training (RIPT) for PI0 vision-language-action policies.

The public API that plugins and research code import lives here.
"""

from ript_core.config import load_config, structure
from ript_core.envs import mujoco_gl, robosuite_cameras, robosuite_quiet, robosuite_state
from ript_core.envs.catalogue import Availability, TaskInfo
from ript_core.envs.conformance import BackendCheckError, check_backend
from ript_core.envs.discard import EpisodeDiscarded
from ript_core.envs.interfaces import (
    ActionAdapter,
    ComposedActionAdapter,
    ComposedObservationAdapter,
    ObservationAdapter,
    PolicyInput,
    clip_actions,
    slice_action_dims,
)
from ript_core.envs.options import check_env_options
from ript_core.envs.reset import requested_init_state
from ript_core.envs.spec import (
    GB,
    BackendFootprint,
    BackendSpec,
    Expert,
    ExpertSignatureError,
    check_expert,
    first_missing_module,
)
from ript_core.envs.validation import ObservationError, checked_action, validate_observation
from ript_core.hookspecs import hookimpl
from ript_core.plugins import get_registry, make_env

__version__ = "0.1.0"

__all__ = [
    "GB",
    "ActionAdapter",
    "Availability",
    "BackendCheckError",
    "BackendFootprint",
    "BackendSpec",
    "ComposedActionAdapter",
    "EpisodeDiscarded",
    "ComposedObservationAdapter",
    "Expert",
    "ExpertSignatureError",
    "ObservationAdapter",
    "ObservationError",
    "PolicyInput",
    "TaskInfo",
    "check_backend",
    "check_expert",
    "clip_actions",
    "first_missing_module",
    "get_registry",
    "hookimpl",
    "load_config",
    "make_env",
    "mujoco_gl",
    "requested_init_state",
    "robosuite_cameras",
    "robosuite_quiet",
    "robosuite_state",
    "slice_action_dims",
    "structure",
    "checked_action",
    "validate_observation",
    "check_env_options",
]
