"""Peak GPU memory of one RIPT update per trainable-parameter strategy (issue 12).

Usage::

    python bench/strategies_memory.py --out bench/results/strategies.json   # GPU, full pi0
    python bench/strategies_memory.py --preset pi0-tiny --device cpu        # code path only

For each strategy (``full``, ``lora``, ``expert``) on the full-size preset in
bf16 with random weights: build the policy, sample SDE chains for a
micro-batch (no grad, as a rollout does), then run two update steps, each
accumulating two micro-batches of ``-(adv · log_prob).mean()`` backward
before the trainer's optimizer step (fused AdamW on float32 master copies of
the bf16 weights, ``make_adamw``), and record ``torch.cuda.max_memory_allocated``
over the second one (optimizer state, weights, the first micro-batch's
gradients and the second one's activations all alive: the steady state). The
activations one forward keeps are measured separately. The
micro-batch is the planner's for this GPU without activation checkpointing
(the policy does not implement it yet), capped at ``--max-micro``; the
planner's predicted update peak for that micro-batch is recorded beside it.
Then, for 24 / 48 / 80 GB, the largest micro-batch that fits under
``torch.cuda.set_per_process_memory_fraction`` (doubling, then bisection).
Writes a JSON file; ``--budget-s`` stops the searches early (partial results
are kept and marked).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import torch

from ript_core import get_registry
from ript_core import plan as P
from ript_core.bench.pi0 import make_inputs
from ript_core.policy import PI0Policy
from ript_core.policy.config import LoraSettings
from ript_core.policy.strategies import trainable_parameters
from ript_core.rl.optimizer import make_adamw

GB = 1_000_000_000
STRATEGIES = ("full", "lora", "expert")


def build(preset: str, strategy: str, dtype: str, device: str) -> PI0Policy:
    return PI0Policy.from_preset(
        preset,
        prompts=["pick up the red block and put it in the basket"],
        seed=0,
        strategy=strategy,
        lora=LoraSettings(),
        dtype=dtype,
        device=device,
        action_dim=7,
        state_dim=8,
        logp_horizon=5,
        fast_sampler=False,
    )


def footprint(policy: PI0Policy, strategy: str) -> P.PolicyFootprint:
    return P.PolicyFootprint.from_hf_config(
        policy.arch.pi0_config,
        dtype_bytes=2 if policy.config.dtype == "bfloat16" else 4,
        n_cameras=len(policy.arch.cameras),
        text_tokens=policy.arch.max_token_len,
    ).for_strategy(strategy, lora=policy.config.lora)


def update_peak(policy: PI0Policy, micro: int, steps: int = 2, accumulate: int = 2) -> int:
    """Peak bytes allocated over the last of ``steps`` optimizer steps at
    ``micro``, each accumulating ``accumulate`` micro-batches as the trainer
    does when a mini-batch holds more decisions than one micro-batch: the
    second micro-batch's activations then coexist with the first one's
    gradients (what the planner's update peak adds up)."""
    cuda = policy.device.type == "cuda"
    batch = policy.preprocess(make_inputs(policy, micro, len(policy.arch.cameras)))
    out = policy.sample(batch, "sde", generator=torch.Generator(policy.device).manual_seed(0))
    adv = torch.linspace(-1, 1, micro, device=policy.device)
    opt, _ = make_adamw(trainable_parameters(policy), lr=1e-6)  # as the trainer
    peak = 0
    try:
        for _ in range(steps):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            opt.zero_grad(set_to_none=True)
            for _ in range(accumulate):
                logp = policy.log_prob(batch, out.chain, out.stochastic_step)
                (-(adv * logp).mean() / accumulate).backward()
            opt.step()
            if cuda:
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated()
    finally:
        # the next trial starts from the weights alone
        opt.zero_grad(set_to_none=True)
        del opt, out, batch
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return peak


def activation_bytes(policy: PI0Policy, micro: int) -> int:
    """Bytes the forward of one micro-batch keeps for backward (allocated
    after ``log_prob`` minus before it; no optimizer, no gradients yet)."""
    batch = policy.preprocess(make_inputs(policy, micro, len(policy.arch.cameras)))
    out = policy.sample(batch, "sde", generator=torch.Generator(policy.device).manual_seed(0))
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    logp = policy.log_prob(batch, out.chain, out.stochastic_step)
    torch.cuda.synchronize()
    kept = torch.cuda.memory_allocated() - before
    del logp, out, batch
    gc.collect()
    torch.cuda.empty_cache()
    return kept


def fits(policy: PI0Policy, micro: int) -> bool:
    try:
        update_peak(policy, micro)
        return True
    except torch.OutOfMemoryError:
        gc.collect()
        torch.cuda.empty_cache()
        return False


def largest_micro(policy: PI0Policy, cap: int, limit: int, deadline: float) -> tuple[int, bool]:
    """Largest micro-batch <= limit fitting under the cap; (n, complete)."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(cap / total, 1.0))
    try:
        lo, hi = 0, None
        m = 1
        while m <= limit:  # doubling
            if time.time() > deadline:
                return lo, False
            if fits(policy, m):
                lo, m = m, m * 2
            else:
                hi = m
                break
        hi = hi or limit + 1
        while hi - lo > 1:  # bisection
            if time.time() > deadline:
                return lo, False
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(policy, mid) else (lo, mid)
        return lo, True
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="pi0")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--caps-gb", default="24,48,80")
    ap.add_argument("--max-micro", type=int, default=16)
    ap.add_argument("--budget-s", type=float, default=280.0)
    ap.add_argument("--out", default=None)
    ns = ap.parse_args()
    start = time.time()
    deadline = start + ns.budget_s
    cuda = ns.device == "cuda"
    machine = P.detect_machine()
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "preset": ns.preset,
        "dtype": ns.dtype,
        "torch": torch.__version__,
        "strategies": {},
    }
    for strategy in ns.strategies.split(","):
        policy = build(ns.preset, strategy, ns.dtype, ns.device)
        fp = footprint(policy, strategy)
        # no activation checkpointing: the policy does not implement it (yet)
        plan = P.plan(
            machine,
            fp,
            get_registry().footprint("libero"),
            rollouts_per_update=64,
            overrides={"activation_checkpointing": False},
        )
        micro = max(1, min(plan.train_micro_batch, ns.max_micro))
        weights = torch.cuda.memory_allocated() if cuda else 0
        row: dict[str, Any] = {
            "n_trainable": sum(p.numel() for p in trainable_parameters(policy)),
            "planner_n_trainable": fp.n_trainable,
            "weights_bytes": weights,
            "micro_batch": micro,
            "planner_micro_batch": plan.train_micro_batch,
            "planner_checkpointing": plan.activation_checkpointing,
        }
        pred = P.phase_bytes(
            machine, fp, get_registry().footprint("libero"), 0, 1, micro, False
        ).update
        row["predicted_update_peak_bytes"] = sum(pred.values())
        row["predicted_breakdown"] = pred
        try:
            measured = update_peak(policy, micro)
        except torch.OutOfMemoryError:
            measured = None
        row["measured_update_peak_bytes"] = measured
        row["accumulated_micro_batches"] = 2
        if cuda:
            row["measured_activation_bytes"] = activation_bytes(policy, micro)
        if measured:
            row["predicted_over_measured"] = row["predicted_update_peak_bytes"] / measured
        if cuda:
            row["largest_micro_batch"] = {}
            for cap in (float(c) for c in ns.caps_gb.split(",")):
                n, complete = largest_micro(policy, int(cap * GB), ns.max_micro * 4, deadline)
                row["largest_micro_batch"][f"{cap:g}"] = {"micro_batch": n, "complete": complete}
        results["strategies"][strategy] = row
        print(json.dumps({strategy: row}, default=str), flush=True)
        del policy
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    results["wall_s"] = time.time() - start
    if ns.out:
        with open(ns.out, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
