"""How many CPU threads torch may use in the process that drives rollouts.

With the policy on an accelerator that process only stages small host copies,
and OpenMP's idle threads busy-wait on the cores its env workers need, so one
thread is the default there (measured: docs/training.md, "Host threads"). On
CPU the policy's own matmuls need the threads: torch's default stands.
"""

from __future__ import annotations

import torch


def rollout_threads(configured: int | None, policy_device: torch.device) -> int | None:
    """The intra-op thread count to set, or ``None`` to leave torch's default.

    ``configured`` (``torch_threads`` in a config, ``--threads`` on the
    command line) wins when given; otherwise 1 for a policy off the CPU.
    """
    if configured is not None:
        if configured < 1:
            raise ValueError(f"torch_threads must be >= 1 or null, got {configured}")
        return configured
    return None if policy_device.type == "cpu" else 1


def apply_rollout_threads(configured: int | None, policy_device: torch.device) -> int:
    """Set :func:`rollout_threads`'s choice (if any); returns the count in force."""
    threads = rollout_threads(configured, policy_device)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()
