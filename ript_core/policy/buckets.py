"""Batch buckets: the batch a bucketing policy actually runs.

The CUDA fast sampler pads each call to a bucket so that a few CUDA graphs
serve every batch size; the planner costs the same buckets.
"""

from __future__ import annotations

from collections.abc import Collection


def batch_bucket(batch: int, sizes: Collection[int] = ()) -> int:
    """The batch a bucketing policy actually runs: the next power of two (the
    CUDA fast sampler pads to it so that a few CUDA graphs serve every size,
    ript_core/policy/fast/sampler.py), or the smallest of ``sizes`` that holds
    it if that is smaller -- batch sizes its caller announced it will send
    (:func:`round_batch_sizes`: a pipelined runner's group calls), which get
    graphs of their own."""
    power = 1 << (batch - 1).bit_length() if batch > 1 else batch
    return min([power, *(s for s in sizes if s >= batch)])
