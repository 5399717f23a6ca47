"""Chunk latency and throughput of the PI0 policy, ODE vs SDE, random weights.

Usage::

    python bench/policy_latency.py                           # pi0-tiny, fp32, CPU/GPU
    python bench/policy_latency.py --preset pi0 --dtype bf16  # full size (needs a GPU)

Times ``policy.sample`` (prefix once + N expert steps, what a rollout calls
per chunk) at each batch size, plus ``log_prob`` forward+backward (what a
PPO update calls per minibatch) for the SDE chain, and prints a markdown
table. On a GPU each log_prob cell also gives that phase's peak memory, and an
out-of-memory shows as ``OOM``. A further column times transformers' own
``sample_actions`` on the same model and inputs (the reference the ODE
sampler is bit-identical to), so the comparison is on the same machine and
in the same run. Inputs: random images at the model's size for the first two camera
slots (LIBERO-like: the third pi0 slot is absent and dropped), padded
prompts, random state. Weights are random: speed only, not behaviour.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch

from ript_core.bench.harness import DTYPES, timings
from ript_core.bench.pi0 import make_inputs, transformers_actions
from ript_core.policy import PI0Policy, PolicyBatch


def timed(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Median wall time in ms (synchronised before and after each call)."""
    return statistics.median(timings(fn, device, iters, warmup))


UPDATES = {"full": "VLM+expert", "expert": "expert only"}


def measure_update(
    policy: PI0Policy,
    batch: PolicyBatch,
    chain: torch.Tensor,
    train_vlm: bool,
    device: torch.device,
    iters: int,
) -> str:
    """``log_prob`` fwd+bwd ms of one SDE chain with the VLM trained or frozen;
    on a GPU also the peak memory of that phase. An out-of-memory is a result
    (the planner's micro-batch exists for it), not a crash of the benchmark."""
    policy.config.train_vlm = train_vlm
    policy.apply_trainable()

    def update() -> None:
        policy.zero_grad(set_to_none=True)
        policy.log_prob(batch, chain).sum().backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        ms = timed(update, device, iters, 1)
    except torch.OutOfMemoryError:
        policy.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return "OOM"
    finally:
        policy.zero_grad(set_to_none=True)
    if device.type == "cuda":
        return f"{ms:.1f} ({torch.cuda.max_memory_allocated(device) / 1e9:.1f} GB)"
    return f"{ms:.1f}"


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
        "--update",
        choices=["full", "expert", "both", "none"],
        default="full",
        help="log_prob fwd+bwd columns: gradients through VLM+expert, expert only, both, none",
    )
    parser.add_argument("--no-logprob", action="store_true", help="same as --update none")
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the column timing transformers' own sample_actions on the same model",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    updates = [] if args.no_logprob or args.update == "none" else ["full", "expert"]
    if args.update in ("full", "expert"):
        updates = [args.update]

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
    if device.type == "cuda":
        print(f"Weights resident: {torch.cuda.memory_allocated(device) / 1e9:.2f} GB\n")
    cols = ["batch", "preprocess ms", "ODE ms/chunk", "ODE chunks/s", "SDE ms/chunk"]
    cols.append("SDE chunks/s")
    if not args.no_reference:
        cols.append("transformers sample_actions ms/chunk")
    if device.type == "cuda":
        cols.append("sampling peak GB")
    cols += [f"log_prob fwd+bwd ms, {UPDATES[u]}" for u in updates]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
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
        cells = [f"{bsz}", f"{pre:.1f}", f"{ode:.1f}", f"{bsz * 1000 / ode:.1f}", f"{sde:.1f}"]
        cells.append(f"{bsz * 1000 / sde:.1f}")
        if not args.no_reference:
            # the same model and inputs through transformers' own sampling loop:
            # a same-machine baseline for the ODE column (float32 noise, as ours)
            kw = policy.model_inputs(batch)
            noise = torch.randn(
                bsz, policy.chunk_size, policy.max_action_dim, device=device, dtype=torch.float32
            )

            def reference(kw=kw, noise=noise) -> None:
                transformers_actions(policy, kw, noise)  # model inputs prepared outside the timing

            cells.append(f"{timed(reference, device, args.iters, args.warmup):.1f}")
        if device.type == "cuda":
            cells.append(f"{torch.cuda.max_memory_allocated(device) / 1e9:.1f}")
        if updates:
            chain = policy.sample(batch, "sde").chain
            for u in updates:
                cells.append(
                    measure_update(
                        policy, batch, chain, u == "full", device, max(1, args.iters // 2)
                    )
                )
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
