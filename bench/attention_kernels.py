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

The masks are PI0's: 8 padded prompt keys, and in the expert step the
suffix block structure (the state query sees only the state key; action
queries see the state and every action key). ``--flex`` adds
``torch.nn.attention.flex_attention`` (compiled, KV heads *not* expanded:
``enable_gqa``), with its block mask built once per call site
(``mask_build_ms``: one ``create_block_mask``, as one per chunk would cost).
``--matmul`` adds attention written as two batched matmuls around a masked
softmax, compiled (inductor fuses the mask, softmax and casts into one
kernel), with the 8 query heads folded into the rows of the one KV head:
``matmul_fp32`` multiplies in float32 (TF32 off), ``matmul_bf16`` in bf16
with the scores rounded to bf16 -- a few small kernels where the fused
kernels give a batch-1 call only 8 thread blocks for 611 keys.
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


PAD = slice(40, 48)  # prompt padding keys, as a padded prefix has


def pi0_mask(b: int, q: int, k: int, dev: torch.device) -> torch.Tensor:
    """``[b, 1, q, k]`` bool: padding, plus the suffix blocks when the queries
    are the expert's (``q < k``: the last ``q`` keys are the suffix)."""
    mask = torch.ones(b, 1, q, k, dtype=torch.bool, device=dev)
    mask[..., PAD] = False
    if q < k:
        p = k - q
        mask[:, :, 0, p + 1 :] = False  # the state query sees no action key
    return mask


def flex_row(qt, kt, vt, mask, ref) -> dict:
    """flex_attention (compiled) with GQA kept folded; its block mask from
    the same boolean mask."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    dense = mask[:, 0]

    def mask_mod(b, h, q_idx, kv_idx):
        return dense[b, q_idx, kv_idx]

    b, _, q, k = mask.shape
    row: dict = {"backend": "flex"}
    try:
        build = lambda: create_block_mask(mask_mod, b, None, q, k, device=qt.device)  # noqa: E731
        block = build()
        row["mask_build_ms"] = time_ms(build, iters=10, warmup=2)
        compiled_build = torch.compile(build)
        compiled_build()
        row["mask_build_compiled_ms"] = time_ms(compiled_build, iters=10, warmup=2)
    except Exception as exc:  # report the failure, keep the other rows
        row["mask_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    # short query blocks go to flex's decoding kernel, which had no valid
    # config at head dim 256 on the H200; FORCE_USE_FLEX_ATTENTION takes the
    # regular kernel, with smaller tiles for the 256-wide heads
    variants = {
        "": None,
        "_force": {"FORCE_USE_FLEX_ATTENTION": True},
        "_force_64": {"FORCE_USE_FLEX_ATTENTION": True, "BLOCK_M": 64, "BLOCK_N": 32},
    }
    flex = torch.compile(flex_attention, dynamic=False)
    for tag, opts in variants.items():
        try:

            def call(opts=opts):
                return flex(qt, kt, vt, block_mask=block, enable_gqa=True, kernel_options=opts)

            out = call()
            row["ms" + tag] = time_ms(call)
            row["graph_ms" + tag] = graph_ms(call)
            if ref is not None:
                row["max_abs_diff_vs_first" + tag] = float((out.float() - ref).abs().max())
        except Exception as exc:  # report the failure, keep the other rows
            row["error" + tag] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return row


def matmul_attention(q, k, v, mask, acc: torch.dtype):
    """``q`` ``[b, h, nq, d]``; ``k``, ``v`` ``[b, 1, nk, d]`` (one KV head);
    ``mask`` ``[b, 1, nq, nk]`` bool. Softmax in float32 either way."""
    b, h, nq, d = q.shape
    rows = q.reshape(b, h * nq, d).to(acc)
    scores = torch.matmul(rows, k[:, 0].transpose(-1, -2).to(acc)).float() * d**-0.5
    scores = scores.view(b, h, nq, -1).masked_fill(~mask, float("-inf"))
    probs = scores.softmax(-1).to(acc).view(b, h * nq, -1)
    return torch.matmul(probs, v[:, 0].to(acc)).view(b, h, nq, d).to(q.dtype)


def matmul_rows(qt, kt, vt, mask, ref) -> list[dict]:
    """``matmul_fp32`` and ``matmul_bf16`` (module docstring), compiled."""
    rows = []
    for name, acc in (("matmul_fp32", torch.float32), ("matmul_bf16", torch.bfloat16)):
        row: dict = {"backend": name}
        try:
            fn = torch.compile(matmul_attention, dynamic=False)

            def call(fn=fn, acc=acc):
                return fn(qt, kt, vt, mask, acc)

            out = call()
            row["ms"] = time_ms(call)
            row["graph_ms"] = graph_ms(call)
            row["max_abs_diff_vs_first"] = float((out.float() - ref).abs().max())
        except Exception as exc:  # report the failure, keep the other rows
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,8,32,64")
    ap.add_argument("--flex", action="store_true", help="also time flex_attention")
    ap.add_argument("--matmul", action="store_true", help="also time compiled matmul attention")
    ap.add_argument("--sites", default="expert_step,gemma_prefix")
    ap.add_argument("--out", default=None)
    ns = ap.parse_args()
    dev = torch.device("cuda")
    # flex_attention recompiles per shape and kernel option: past dynamo's
    # default limit (8) it would run its slow eager path
    torch._dynamo.config.recompile_limit = 256
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    rows = []
    for bsz in (int(b) for b in ns.batch_sizes.split(",")):
        for site, (b, q, k, h) in shapes(bsz).items():
            if site not in ns.sites.split(","):
                continue
            g = torch.Generator(device=dev).manual_seed(0)
            qt = torch.randn(b, h, q, 256, device=dev, dtype=torch.bfloat16, generator=g)
            # one KV head shared by the 8 query heads, expanded (copied) as
            # transformers' repeat_kv does before SDPA with a mask
            kt = torch.randn(b, 1, k, 256, device=dev, dtype=torch.bfloat16, generator=g)
            vt = torch.randn(b, 1, k, 256, device=dev, dtype=torch.bfloat16, generator=g)
            kv1 = (kt, vt)
            kt, vt = (t.expand(b, h, k, 256).contiguous() for t in kv1)
            mask = pi0_mask(b, q, k, dev)
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
            if ns.matmul:
                for row in matmul_rows(qt, *kv1, mask, ref):
                    row.update(site=site, batch=b, queries=q, keys=k)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            if ns.flex:
                row = flex_row(qt, *kv1, mask, ref)
                row.update(site=site, batch=b, queries=q, keys=k)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if ns.out:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
        with open(ns.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
