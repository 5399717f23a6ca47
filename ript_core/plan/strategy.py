"""Which training strategy fits: the most trainable one whose smallest plan fits."""

from __future__ import annotations

from typing import Any

from ript_core.envs.spec import BackendFootprint
from ript_core.plan.footprint import PolicyFootprint, Strategy
from ript_core.plan.machine import MachineSpec, usable_device_bytes
from ript_core.plan.phases import min_peak
from ript_core.plan.units import fmt_gb

#: Fall-back order when a strategy does not fit: the one giving up least first.
#: ``lora`` before ``expert``: its adapters still change the VLM's features
#: (RIPT-VLA's recipe); ``expert`` leaves the VLM exactly as pre-trained.
STRATEGY_PREFERENCE: tuple[Strategy, ...] = ("full", "lora", "expert")


def recommend_strategy(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    *,
    lora: Any | None = None,
) -> tuple[Strategy, str] | None:
    """The cheapest change that fits: the first of :data:`STRATEGY_PREFERENCE`
    (most to least trainable) whose smallest plan (1 env, batch 1,
    micro-batch 1, checkpointing) fits the device, and why in one sentence;
    ``None`` when none does (a bigger device or bf16 is then the fix)."""
    usable = usable_device_bytes(machine)
    peaks = {
        s: min_peak(machine, policy.for_strategy(s, lora=lora), backend)
        for s in STRATEGY_PREFERENCE
    }
    fitting = [s for s in STRATEGY_PREFERENCE if peaks[s] <= usable]
    if not fitting:
        return None
    best = fitting[0]
    fp = policy.for_strategy(best, lora=lora)
    worse = [s for s in STRATEGY_PREFERENCE[: STRATEGY_PREFERENCE.index(best)]]
    why = "; ".join(f"{s} needs ≥ {fmt_gb(peaks[s])} even at its smallest plan" for s in worse)
    what = {
        "full": "every weight trains",
        "lora": (
            f"{fp.n_adapter_params / 1e6:.4g}M adapter parameters on frozen base weights"
            + (" (the VLM prefix still back-propagates)" if fp.grads_through_vlm else "")
        ),
        "expert": (
            "the action expert and projections train, the VLM is frozen and its prefix runs "
            "without gradients"
        ),
    }[best]
    return best, (
        f"recommended: strategy {best} — {why + '; ' if why else ''}{best} trains "
        f"{fp.n_trainable / 1e6:.4g}M parameters ({what}) and its smallest plan peaks at "
        f"{fmt_gb(peaks[best])} of {fmt_gb(usable)} usable; it is the first of "
        f"{' → '.join(STRATEGY_PREFERENCE)} (most to least trainable) that fits"
    )
