"""Which SDPA kernel is fastest at PI0's masked attention shapes (issue 13).

Usage::

    python bench/attention_kernels.py --out bench/results/attention_kernels.json   # GPU

Times ``F.scaled_dot_product_attention`` with a boolean mask, restricted to
one backend at a time (cuDNN, memory-efficient, math), at the shapes one
full-size ``pi0`` chunk runs: an expert denoising step (51 queries against
the 560-token prefix + 51 suffix keys, 8 query heads sharing 1 KV head,
head dim 256) and the Gemma prefix (560 x 560), at batch 1, 8, 32 and 64. GQA is
expanded to 8 KV heads first, as transformers' SDPA path does under a mask.
Each cell is the median of CUDA-event timings of 50 calls after 5 warm-ups
(``ms``: launched eagerly; ``graph_ms``: replayed from a CUDA graph, as the
fast sampler runs them), or the error a backend raises for the shape.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def shapes(batch: int) -> dict[str, tuple[int, int, int, int]]:
    """(batch, queries, keys, heads) per call site; head dim 256."""
    return {"expert_step": (batch, 51, 611, 8), "gemma_prefix": (batch, 560, 560, 8)}


def time_ms(fn, iters: int = 50, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def graph_ms(fn, iters: int = 50) -> float:
    """Median ms of one call captured in a CUDA graph (no launch gaps between
    its kernels -- how the fast sampler runs it)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay, iters)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,8,32,64")
    ap.add_argument("--out", default=None)
    ns = ap.parse_args()
    dev = torch.device("cuda")
    rows = []
    for bsz in (int(b) for b in ns.batch_sizes.split(",")):
        for site, (b, q, k, h) in shapes(bsz).items():
            g = torch.Generator(device=dev).manual_seed(0)
            qt = torch.randn(b, h, q, 256, device=dev, dtype=torch.bfloat16, generator=g)
            kt = torch.randn(b, h, k, 256, device=dev, dtype=torch.bfloat16, generator=g)
            vt = torch.randn(b, h, k, 256, device=dev, dtype=torch.bfloat16, generator=g)
            mask = torch.ones(b, 1, q, k, dtype=torch.bool, device=dev)
            mask[..., 40:48] = False  # prompt padding, as a padded prefix has
            ref = None
            for name, backend in BACKENDS.items():
                row = {"site": site, "batch": b, "queries": q, "keys": k, "backend": name}
                try:
                    with sdpa_kernel([backend]):
                        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)
                        row["ms"] = time_ms(
                            lambda q=qt, k=kt, v=vt, m=mask: F.scaled_dot_product_attention(
                                q, k, v, attn_mask=m
                            )
                        )
                        row["graph_ms"] = graph_ms(
                            lambda q=qt, k=kt, v=vt, m=mask: F.scaled_dot_product_attention(
                                q, k, v, attn_mask=m
                            )
                        )
                    ref = out.float() if ref is None else ref
                    row["max_abs_diff_vs_first"] = float((out.float() - ref).abs().max())
                except RuntimeError as exc:
                    row["error"] = str(exc).splitlines()[0][:200]
                rows.append(row)
                print(json.dumps(row), flush=True)
    if ns.out:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
        with open(ns.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
