"""A config's architecture settings against a loaded checkpoint's.

A checkpoint decides its own architecture: a ``policy:`` section that names a
different one beside ``init_checkpoint`` would otherwise be ignored without a
word. Fields left at ``None`` defer to the checkpoint; ``preset`` has a
default, so it is compared only when set to something else.
"""

from __future__ import annotations

from typing import Any

from ript_core.policy.config import PolicyConfig
from ript_core.policy.policy import PI0Policy

_DEFAULT_PRESET = PolicyConfig().preset


def _actual(policy: PI0Policy) -> dict[str, Any]:
    arch = policy.arch
    return {
        "preset": policy.config.preset,
        "chunk_size": policy.chunk_size,
        "max_action_dim": policy.max_action_dim,
        "max_state_dim": policy.max_state_dim,
        "num_steps": policy.num_steps,
        "cameras": list(arch.cameras),
        "max_token_len": arch.max_token_len,
        "image_size": arch.image_size,
    }


def architecture_mismatches(wanted: PolicyConfig, policy: PI0Policy) -> list[str]:
    """``policy.chunk_size=20 (the checkpoint has 50)`` for each setting of
    ``wanted`` that the loaded ``policy`` does not have."""
    out = []
    for name, actual in _actual(policy).items():
        value = getattr(wanted, name)
        if value is None or (name == "preset" and value == _DEFAULT_PRESET):
            continue
        if (list(value) if isinstance(value, tuple) else value) != actual:
            out.append(f"policy.{name}={value!r} (the checkpoint has {actual!r})")
    return out


def check_architecture(wanted: PolicyConfig, policy: PI0Policy, source: str) -> None:
    """Raise ``ValueError`` naming every mismatch between ``wanted`` and the
    policy loaded from ``source``."""
    bad = architecture_mismatches(wanted, policy)
    if bad:
        raise ValueError(
            f"{source} fixes the policy's architecture, but the config asks for "
            f"{'; '.join(bad)}: remove those policy settings (the checkpoint decides them)"
        )
