"""GPU precision study: fp32 vs TF32 vs bf16 PI0 actions (issue 7, item 5).

Full-size ``pi0`` preset (PaliGemma 2B + SigLIP So400m + 300M expert), random
weights, the same preprocessed inputs and the same float32 noise for every
variant; the reference is fp32 with TF32 off. Each variant's ODE actions are
compared with the reference in normalised units and converted into
end-effector displacement per control step with LIBERO-like action stats.

Variants:

- ``fp32``            reference (``torch.set_float32_matmul_precision("highest")``);
- ``tf32``            same fp32 weights, TF32 matmuls and convolutions on;
- ``bf16 stock``      transformers as shipped: the whole model ``.to(bfloat16)``,
                      ``sample_actions`` with its default noise dtype (bf16),
                      float32 time grid, the sinusoid frequency table rounded to bf16;
- ``bf16 stock+t64``  the same with ript's float64 time embedding;
- ``bf16 ript``       ript's layout (precision.py): bf16 stacks, float32
                      action/state/time MLP and velocity head, float32 noise
                      and Euler updates, float64 time embedding;
- ``bf16 ript+vit32`` additionally SigLIP and the projector in float32.

Assumptions for millimetres (stated in docs/benchmarks.md too): LIBERO's
OSC_POSE controller maps an action of 1.0 on x/y/z to 0.05 m and on the
rotation dims to 0.5 rad per control step (robosuite's default
``output_max``); the action std of the un-normalisation is LIBERO-like
(``LIBERO_ACTION_STD`` below, approximately the openpi ``pi0_libero`` norm
stats). A normalised error ``e`` on dim ``i`` is then ``e * std_i`` action
units and ``e * std_i * 50`` mm for i in x, y, z.

Weights: transformers' own init (linears std 0.02, RMSNorm scales 0) makes a
near-constant network in which every precision agrees trivially, so weights
are redrawn per module with std ``1/sqrt(fan_in)`` (O(1) activations, closer to a
trained model's) -- ``--init hf`` keeps transformers' init for comparison.

Run (GPU)::

    python bench/precision_study.py --batch 4 --seeds 2 --out results.json
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy import FeatureStats, NormStats, PI0Policy
from ript_core.policy.precision import install_exact_time_embedding

PROMPTS = [
    "put both the alphabet soup and the tomato sauce in the basket",
    "open the middle drawer of the cabinet",
    "pick up the black bowl next to the ramekin and place it on the plate",
    "turn on the stove",
]
# Approximately the openpi pi0_libero action norm stats (x, y, z, rx, ry, rz, gripper).
LIBERO_ACTION_MEAN = [0.026, 0.084, -0.095, 0.004, -0.005, -0.007, -0.04]
LIBERO_ACTION_STD = [0.33, 0.38, 0.44, 0.040, 0.061, 0.078, 1.0]
METRES_PER_UNIT = 0.05  # robosuite OSC_POSE output_max for x/y/z
RADIANS_PER_UNIT = 0.5  # ... and for the rotation dims
EXECUTED = 5  # openpi's LIBERO client executes the first 5 actions of a chunk


@torch.no_grad()
def fan_in_init_(model: nn.Module, seed: int) -> None:
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)

    def draw(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        # drawn where the weights live: 3.5B CPU draws would take minutes
        t.copy_(torch.randn(t.shape, generator=g, device=device, dtype=t.dtype) * std + mean)

    for module in model.modules():
        if isinstance(module, nn.Linear):
            draw(module.weight, module.in_features**-0.5)
            if module.bias is not None:
                draw(module.bias, 0.02)
        elif isinstance(module, nn.Conv2d):
            draw(module.weight, module.weight[0].numel() ** -0.5)
            draw(module.bias, 0.02)
        elif isinstance(module, nn.Embedding):
            draw(module.weight, module.embedding_dim**-0.5)
        elif isinstance(module, nn.LayerNorm):
            draw(module.weight, 0.1, mean=1.0)
            draw(module.bias, 0.02)
        elif type(module).__name__.endswith("RMSNorm"):
            draw(module.weight, 0.1)


def libero_like_inputs(batch: int, seed: int) -> list[PolicyInput]:
    """256x256 agentview + wrist frames (random), 8-D state, LIBERO prompts; the
    third pi0 camera (right wrist) is absent, as for LIBERO."""
    rng = np.random.default_rng(seed)
    return [
        PolicyInput(
            images={
                "base_0_rgb": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
                "left_wrist_0_rgb": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
            },
            state=rng.normal(size=8).astype(np.float32),
            prompt=PROMPTS[i % len(PROMPTS)],
        )
        for i in range(batch)
    ]


def libero_stats() -> NormStats:
    state = FeatureStats(mean=[0.0] * 8, std=[1.0] * 8)
    actions = FeatureStats(mean=LIBERO_ACTION_MEAN, std=LIBERO_ACTION_STD)
    return NormStats(state=state, actions=actions, eps=1e-6, source="libero-like (bench)")


def errors(actions: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Normalised, action-unit and metric errors over the 7 LIBERO dims."""
    e = (actions.double() - reference.double())[..., :7].cpu()  # [B, chunk, 7]
    std = torch.tensor(LIBERO_ACTION_STD, dtype=torch.float64)
    units = e * std
    pos_mm = units[..., :3].norm(dim=-1) * METRES_PER_UNIT * 1000.0  # [B, chunk]
    rot_deg = units[..., 3:6].norm(dim=-1) * RADIANS_PER_UNIT * 180.0 / math.pi
    ex = slice(0, EXECUTED)
    return {
        "norm_max": e.abs().max().item(),
        "norm_mean": e.abs().mean().item(),
        "units_max": units.abs().max().item(),
        "mm_max_executed": pos_mm[:, ex].max().item(),
        "mm_mean_executed": pos_mm[:, ex].mean().item(),
        "mm_max_chunk": pos_mm.max().item(),
        "deg_max_executed": rot_deg[:, ex].max().item(),
        "gripper_max": units[..., 6].abs().max().item(),
    }


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    fn()  # warm-up
    _sync()
    start = time.perf_counter()
    out = fn()
    _sync()
    return out, (time.perf_counter() - start) * 1000.0


def run(init: str, batch_size: int, seed: int, preset: str, device: str) -> list[dict]:
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    base = PI0Policy.from_preset(
        preset, prompts=PROMPTS, stats=libero_stats(), device=device, seed=seed
    )
    if init == "fan-in":
        fan_in_init_(base.model, seed + 1)
    batch = base.preprocess(libero_like_inputs(batch_size, seed))
    noise = torch.randn(
        batch_size,
        base.chunk_size,
        base.max_action_dim,
        generator=torch.Generator().manual_seed(seed + 2),
        dtype=torch.float32,
    ).to(device)
    rows = []

    def record(name: str, actions: torch.Tensor, ms: float) -> None:
        rows.append({"init": init, "seed": seed, "variant": name, "ms": ms, **errors(actions, ref)})
        print(json.dumps(rows[-1]), flush=True)

    ref, ms = timed(lambda: base.sample(batch, "ode", noise=noise).actions)
    record("fp32", ref, ms)

    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    out, ms = timed(lambda: base.sample(batch, "ode", noise=noise).actions)
    record("tf32", out, ms)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False

    # transformers as shipped, whole model bf16 (its time-frequency buffer is
    # rounded by .to(bfloat16); ours was swapped out, so put a stock one back)
    from transformers.models.pi0.modeling_pi0 import PI0TimestepEmbeddings

    stock = copy.deepcopy(base.model)
    stock.embed_action_time.sinusoid_embeds = PI0TimestepEmbeddings(stock.config).to(device)
    stock.to(torch.bfloat16)
    kw = base.model_inputs(batch)
    pixels = kw["pixel_values"].to(torch.bfloat16)

    def stock_sample() -> torch.Tensor:
        return stock.sample_actions(
            kw["state"].to(torch.bfloat16),
            kw["input_ids"],
            pixels,
            noise=noise.to(torch.bfloat16),
            attention_mask=kw["attention_mask"],
            pixel_attention_mask=kw["pixel_attention_mask"],
        )

    out, ms = timed(stock_sample)
    record("bf16 stock", out, ms)
    install_exact_time_embedding(stock)
    out, ms = timed(stock_sample)
    record("bf16 stock+t64", out, ms)
    stock.to("meta")  # free its weights before the next copy (4 copies would not fit)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    cfg = attrs_evolve(base.config, dtype="bfloat16")
    ours = PI0Policy(cfg, copy.deepcopy(base.model), base.arch, base.tokenizer, base.stats)
    out, ms = timed(lambda: ours.sample(batch, "ode", noise=noise).actions)
    record("bf16 ript", out, ms)

    vlm = ours.model.model.vlm
    vlm.vision_tower.float()
    vlm.multi_modal_projector.float()
    vlm.vision_tower.register_forward_pre_hook(
        lambda _m, args, kwargs: (
            tuple(a.float() if torch.is_tensor(a) else a for a in args),
            {
                k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in kwargs.items()
            },
        ),
        with_kwargs=True,
    )
    out, ms = timed(lambda: ours.sample(batch, "ode", noise=noise).actions)
    record("bf16 ript+vit32", out, ms)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows


def attrs_evolve(cfg, **changes):
    import attrs

    return attrs.evolve(cfg, **changes)


def table(rows: list[dict]) -> str:
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    lines = [
        "| init | variant | max err (norm.) | mean err (norm.) | max err (action units) "
        "| max mm/step, executed 5 | mean mm/step, executed 5 | max mm/step, chunk 50 "
        "| max rot deg/step, executed | ms/chunk |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for init in inits:
        for v in variants:
            rs = [r for r in rows if r["init"] == init and r["variant"] == v]
            if not rs:
                continue

            def mx(key: str, rs=rs) -> float:
                return max(r[key] for r in rs)

            def mean(key: str, rs=rs) -> float:
                return sum(r[key] for r in rs) / len(rs)

            lines.append(
                f"| {init} | {v} | {mx('norm_max'):.2e} | {mean('norm_mean'):.2e} "
                f"| {mx('units_max'):.2e} | {mx('mm_max_executed'):.3f} "
                f"| {mean('mm_mean_executed'):.3f} | {mx('mm_max_chunk'):.3f} "
                f"| {mx('deg_max_executed'):.3f} | {mean('ms'):.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--init", choices=("fan-in", "hf", "both"), default="both")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--preset", default="pi0", help="pi0-tiny: a CPU smoke test")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "precision_study needs a CUDA GPU (TF32/bf16 matmuls are the subject); "
            "--preset pi0-tiny --device cpu runs a smoke test"
        )
    inits = ["fan-in", "hf"] if args.init == "both" else [args.init]
    rows = []
    for init in inits:
        for seed in range(args.seeds):
            rows += run(init, args.batch, seed, args.preset, args.device)
    print()
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"device: {name}, torch {torch.__version__}, preset {args.preset}")
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
