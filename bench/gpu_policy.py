"""PI0 on one GPU, in one run: correctness, sampling latency/throughput, RIPT
update MFU, memory plan -- ours vs transformers' ``sample_actions``.

Usage (GPU, full size; what docs/benchmarks.md reports)::

    python bench/gpu_policy.py --preset pi0 --dtype bf16 --out bench/results

The bench is :mod:`ript_core.bench.gpu_policy` (what it measures and writes
is described there); tests/bench/test_gpu_benches.py runs it on CPU.
"""

from ript_core.bench.gpu_policy import main

if __name__ == "__main__":
    main()
