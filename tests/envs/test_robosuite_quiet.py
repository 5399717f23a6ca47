"""robosuite's import-time noise: exactly its own messages are dropped."""

from __future__ import annotations

import logging
import warnings

from ript_core import robosuite_quiet


def test_the_filter_drops_robosuites_macro_and_optional_package_messages_only(caplog):
    robosuite_quiet.silence_macro_warnings()
    robosuite_quiet.silence_macro_warnings()  # idempotent: one filter
    logger = logging.getLogger(robosuite_quiet.LOGGER)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=robosuite_quiet.LOGGER):
        logger.warning("No private macro file found!")
        logger.warning("To setup, run: python /x/scripts/setup_macros.py")
        logger.info("Loading controller configuration from: /x/basic.json")
        logger.warning("Could not import robosuite_models. Some robots may not be available.")
        logger.warning("the gripper is stuck")  # a real warning passes
    assert [r.getMessage() for r in caplog.records] == ["the gripper is stuck"]


def test_quiet_import_hides_the_deprecated_warn_calls_only():
    logger = logging.getLogger(robosuite_quiet.LOGGER)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with robosuite_quiet.quiet_import():
            logger.warn("No private macro file found!")  # what robosuite 1.4 calls
            warnings.warn("another deprecation", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["another deprecation"]
