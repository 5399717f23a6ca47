"""robosuite's import-time noise, silenced where it is made.

Every ``import robosuite`` without a ``robosuite/macros_private.py`` logs
three warnings ("No private macro file found!", "It is recommended to use a
private macro file", "To setup, run: ...setup_macros.py"), once per process:
in every rollout worker, and into every test log. They carry no information
for ript's users (robosuite works with its default macros), so a filter on
robosuite's logger drops exactly those messages and nothing else.
"""

from __future__ import annotations

import logging

LOGGER = "robosuite_logs"  # robosuite.utils.log_utils.DefaultLogger's name
_DROPPED = (
    "No private macro file found",
    "It is recommended to use a private macro file",
    "To setup, run: python ",
)


class _DropPrivateMacroWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_DROPPED)


def silence_macro_warnings() -> None:
    """Install the filter (idempotent); call before robosuite is imported."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, _DropPrivateMacroWarnings) for f in logger.filters):
        logger.addFilter(_DropPrivateMacroWarnings())
