"""The PI0 pieces the GPU benches share: random inputs, per-sample generators,
transformers' reference sampler, the planner footprint of a policy, and the
RIPT update step they time."""

from __future__ import annotations

import gc
from collections.abc import Callable

import numpy as np
import torch

from ript_core import plan as pl
from ript_core.policy import PI0Policy, PolicyBatch, SampleOutput
from ript_core.policy.fast.norms import use_fused_rms_norm
from ript_core.policy.fast.sampler import FastSampler
from ript_core.policy_input import PolicyInput
from ript_core.rl.ript import ppo_loss

#: The clip range of the timed update's PPO loss (UpdateConfig's default).
CLIP = 0.2


def make_inputs(policy: PI0Policy, n: int, cameras: int, seed: int = 0) -> list[PolicyInput]:
    rng = np.random.default_rng(seed)
    size = policy.arch.image_size
    return [
        PolicyInput(
            images={
                s: rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                for s in policy.arch.cameras[:cameras]
            },
            state=rng.normal(size=policy.state_dim).astype(np.float32),
            prompt="pick up the red block and put it in the basket",
        )
        for _ in range(n)
    ]


def gens(n: int, seed: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """Per-sample generators on the sampling device (torch draws there)."""
    return [torch.Generator(device=device).manual_seed(seed + i) for i in range(n)]


def footprint(policy: PI0Policy, cameras: int) -> pl.PolicyFootprint:
    return pl.PolicyFootprint.from_hf_config(
        policy.arch.pi0_config,
        dtype_bytes=2 if policy.dtype == torch.bfloat16 else 4,
        n_cameras=cameras,
        text_tokens=policy.arch.max_token_len,
    )


def machine_spec(device: torch.device) -> pl.MachineSpec:
    """The machine the benches plan for: this GPU as it is now (its free
    memory included), or a nominal 2-core CPU with 8 GiB for the smoke runs."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return pl.MachineSpec.gpu(total, 16, 128 << 30, device_free_bytes=free)
    return pl.MachineSpec.cpu_only(8 << 30, 2)


def transformers_actions(
    policy: PI0Policy, kw: dict[str, torch.Tensor], noise: torch.Tensor
) -> torch.Tensor:
    """transformers' own ``sample_actions`` as shipped, on prepared model inputs."""
    with torch.no_grad():
        return policy.model.sample_actions(
            kw["state"],
            kw["input_ids"],
            kw["pixel_values"],
            noise=noise,
            attention_mask=kw["attention_mask"],
            pixel_attention_mask=kw["pixel_attention_mask"],
            num_steps=policy.num_steps,
        )


def reference(policy: PI0Policy, batch: PolicyBatch, noise: torch.Tensor) -> torch.Tensor:
    """transformers' loop as shipped: its own RMSNorm, not ript-core's fused one."""
    use_fused_rms_norm(policy.model, on=False)
    try:
        return transformers_actions(policy, policy.model_inputs(batch), noise)
    finally:
        use_fused_rms_norm(policy.model, on=policy.config.fused_norms)


def update_step(
    policy: PI0Policy, fast: FastSampler, micro: int, cameras: int
) -> tuple[Callable[[], None], PolicyBatch, SampleOutput]:
    """The RIPT update step the benches time: an SDE chain sampled for
    ``micro`` inputs (not timed), then ``step()`` = ``log_prob`` of that
    chain + PPO clipped loss + backward. Returns ``(step, batch, sample)``."""
    device = policy.device
    batch = policy.preprocess(make_inputs(policy, micro, cameras, seed=7))
    out = fast.sample(
        batch, "sde", gens(micro, 200, device), None, policy.config.noise_level, policy.num_steps
    )
    fast.clear()
    adv = torch.randn(micro, generator=torch.Generator().manual_seed(3)).to(device)

    def step() -> None:
        policy.zero_grad(set_to_none=True)
        logp = policy.log_prob(batch, out.chain, out.stochastic_step)
        loss, _ = ppo_loss(logp, out.log_prob, adv, CLIP)
        loss.backward()

    return step, batch, out


def release(policy: PI0Policy, fast: FastSampler) -> float | None:
    """Free what one measurement leaves behind before the next, and return
    the GB still allocated (None off CUDA): the sampler's graphs, gradients,
    and reference cycles (a caught OutOfMemoryError keeps the failing
    frames' tensors alive until the collector runs). The meta records what
    each section starts from, so a leak shows in the results."""
    fast.clear()
    policy.zero_grad(set_to_none=True)
    gc.collect()
    if policy.device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated(policy.device) / 1e9
