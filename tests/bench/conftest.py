"""The benches' CPU runs build the tiny policy: the same fp32 guard as tests/policy."""

from tests.policy.conftest import _fp32_highest  # noqa: F401  (autouse fixture)
