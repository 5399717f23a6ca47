"""The fault-injection suite shares the tiny RIPT run of tests/rl."""

from tests.rl.conftest import tiny_cfg, tiny_config, write_cfg  # noqa: F401
