"""robosuite's import-time noise, silenced where it is made.

A public helper module (``from ript_core import robosuite_quiet``) for the
robosuite-based backends (LIBERO, robosuite): call :func:`quiet_import`
instead of a bare ``import robosuite`` (or what imports it).

Every ``import robosuite`` without a ``robosuite/macros_private.py`` logs
three warnings ("No private macro file found!", "It is recommended to use a
private macro file", "To setup, run: ...setup_macros.py"), once per process:
in every rollout worker, and into every test log. robosuite 1.5 adds two
about optional packages for other robots (``robosuite_models``, mink's
whole-body IK for GR1) and an INFO line naming the controller file it
loaded. None of them concerns the Panda tasks here, so a filter on
robosuite's logger drops exactly those messages and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

LOGGER = "robosuite_logs"  # robosuite.utils.log_utils.DefaultLogger's name
_DROPPED = (
    "No private macro file found",
    "It is recommended to use a private macro file",
    "To setup, run: python ",
    "Could not import robosuite_models",
    "Could not load the mink-based whole-body IK",
    "Loading controller configuration from",
)


class _DropPrivateMacroWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_DROPPED)


def silence_macro_warnings() -> None:
    """Install the filter (idempotent); call before robosuite is imported."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, _DropPrivateMacroWarnings) for f in logger.filters):
        logger.addFilter(_DropPrivateMacroWarnings())


@contextlib.contextmanager
def quiet_import() -> Iterator[None]:
    """Around the first import of robosuite (or of what imports it): the
    filter above, and no ``DeprecationWarning`` for robosuite calling the
    deprecated ``Logger.warn`` for those very messages."""
    silence_macro_warnings()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The 'warn' method is deprecated", DeprecationWarning)
        yield
