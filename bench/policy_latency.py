"""Chunk latency and throughput of the PI0 policy, ODE vs SDE, random weights.

Usage::

    python bench/policy_latency.py                           # pi0-tiny, fp32, CPU/GPU
    python bench/policy_latency.py --preset pi0 --dtype bf16  # full size (needs a GPU)

Times ``policy.sample`` (prefix once + N expert steps, what a rollout calls
per chunk) at each batch size, plus ``log_prob`` forward+backward (what a
PPO update calls per minibatch) for the SDE chain, and prints a markdown
table. Inputs: random images at the model's size for the first two camera
slots (LIBERO-like: the third pi0 slot is absent and dropped), padded
prompts, random state. Weights are random: speed only, not behaviour.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy import PI0Policy

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def make_inputs(policy: PI0Policy, n: int, cameras: int, seed: int = 0) -> list[PolicyInput]:
    rng = np.random.default_rng(seed)
    size = policy.arch.image_size
    slots = policy.arch.cameras[:cameras]
    return [
        PolicyInput(
            images={s: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for s in slots},
            state=rng.normal(size=policy.state_dim).astype(np.float32),
            prompt="pick up the red block and put it in the basket",
        )
        for _ in range(n)
    ]


def timed(fn, device: torch.device, iters: int, warmup: int) -> float:
    """Median wall time in ms (CUDA-synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="pi0-tiny")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument(
        "--num-steps", type=int, default=None, help="denoising steps (preset default)"
    )
    parser.add_argument("--cameras", type=int, default=2, help="camera slots given images")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--no-logprob", action="store_true", help="skip the log_prob fwd+bwd column"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    policy = PI0Policy.from_preset(
        args.preset,
        seed=0,
        dtype=DTYPES[args.dtype],
        device=args.device,
        num_steps=args.num_steps,
        compile=args.compile,
        logp_horizon=5,
    )
    device = policy.device
    params = sum(p.numel() for p in policy.parameters())
    print(
        f"# PI0 policy latency: preset `{args.preset}`, {params / 1e6:.1f}M params, {args.dtype}, "
        f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"{torch.get_num_threads()} threads), {policy.num_steps} steps, chunk {policy.chunk_size}, "
        f"{min(args.cameras, len(policy.arch.cameras))} cameras x {policy.arch.image_size} px, "
        f"{policy.arch.max_token_len} text tokens, torch {torch.__version__}\n"
    )
    header = "| batch | preprocess ms | ODE ms/chunk | ODE chunks/s | SDE ms/chunk | SDE chunks/s |"
    sep = "|---|---|---|---|---|---|"
    if not args.no_logprob:
        header += " log_prob fwd+bwd ms |"
        sep += "---|"
    if device.type == "cuda":
        header += " peak GB |"
        sep += "---|"
    print(header)
    print(sep)
    for bsz in [int(b) for b in args.batch_sizes.split(",")]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        inputs = make_inputs(policy, bsz, args.cameras)
        pre = timed(lambda inputs=inputs: policy.preprocess(inputs), device, args.iters, 1)
        batch = policy.preprocess(inputs)
        ode = timed(
            lambda batch=batch: policy.sample(batch, "ode"), device, args.iters, args.warmup
        )
        sde = timed(
            lambda batch=batch: policy.sample(batch, "sde"), device, args.iters, args.warmup
        )
        row = f"| {bsz} | {pre:.1f} | {ode:.1f} | {bsz * 1000 / ode:.1f} | {sde:.1f} | {bsz * 1000 / sde:.1f} |"
        if not args.no_logprob:
            chain = policy.sample(batch, "sde").chain

            def update(batch=batch, chain=chain) -> None:
                policy.zero_grad(set_to_none=True)
                policy.log_prob(batch, chain).sum().backward()

            row += f" {timed(update, device, max(1, args.iters // 2), 1):.1f} |"
        if device.type == "cuda":
            row += f" {torch.cuda.max_memory_allocated(device) / 1e9:.1f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
