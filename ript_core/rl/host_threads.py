"""How many CPU threads torch may use in the process that drives rollouts.

With the policy on an accelerator, that process only stages small host
copies (observations into pinned memory, the chunk's records out of it), and
its env workers are other processes on the same cores. torch's CPU ops run
on OpenMP (libgomp in the PyPI wheels), whose idle threads busy-wait after
every parallel region instead of sleeping: one copy of a batch's images
spreads over all cores and then keeps them spinning while the env workers
try to wake from their steps. Measured on the H100 host (16 cores, 128 env
workers, G = 7; one process alternating 16 and 1 threads, docs/benchmarks.md):
with 16 threads the envs' 50-step chunks took 772-776 ms instead of 768, a
group's slowest env was 34-35 ms behind its mean instead of 29, and a call's
latency was 133-135 ms instead of 124, so pipelined rollouts ran 1.61-1.63x
lock-step instead of 1.66x. One thread costs those copies nothing
measurable (lock-step's batch-128 call: 698 ms either way). On CPU the
policy's own matmuls need the threads, so torch's default stands there.
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
