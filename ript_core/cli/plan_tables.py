"""The tables ``ript plan`` prints."""

from __future__ import annotations

from rich.table import Table

from ript_core.cli.console import console
from ript_core.plan import (
    MachineSpec,
    ParallelPlan,
    PolicyFootprint,
    StrategyCost,
    fmt_gb,
)


def print_schedule(p: ParallelPlan) -> None:
    """Predicted utilisation of the policy device and of the env workers per G."""
    pipe = p.pipeline
    if pipe is None:
        return
    waves = pipe.options[0].wave_s is not None
    basis = "waves of episodes" if waves else "steady state"
    table = Table(title=f"rollout schedule ({basis}; G = 1 is lock-step)")
    cols = ["G", "envs/group", "period ms", *(["wave s"] if waves else [])]
    for col in (*cols, "env steps/s", "policy busy", "envs busy", ""):
        table.add_column(col)
    for o in pipe.options:
        mark = (
            "chosen" + (" (override)" if pipe.overridden else "") if o.groups == pipe.groups else ""
        )
        table.add_row(
            str(o.groups),
            "/".join(str(n) for n in sorted(set(o.group_sizes), reverse=True)),
            f"{o.period_s * 1e3:.4g}",
            *([f"{o.wave_s:.3g}"] if waves else []),
            f"{o.steps_per_s:,.0f}",
            f"{o.policy_util:.0%}",
            f"{o.env_util:.0%}",
            mark,
        )
    console.print(table)


def print_plan(p: ParallelPlan, machine: MachineSpec, policy: PolicyFootprint) -> None:
    """A table of the phases' predicted peaks, the chosen settings, then the reasons."""
    title = (
        f"ript plan: {policy.name} ({policy.strategy}, {policy.dtype_name}) on "
        f"{machine.device} {fmt_gb(machine.device_total_bytes)}, {machine.cpu_cores} cores"
    )
    table = Table(title=title)
    for col in ("phase", "predicted peak", "usable", "breakdown", "fits"):
        table.add_column(col)
    for phase, peak in p.peak_bytes.items():
        parts = ", ".join(f"{k} {fmt_gb(v)}" for k, v in p.breakdown[phase].items())
        ok = "[green]yes[/green]" if peak <= p.usable_bytes else "[red]NO[/red]"
        table.add_row(phase, fmt_gb(peak), fmt_gb(p.usable_bytes), parts, ok)
    if machine.device == "cuda":
        ok = "[green]yes[/green]" if p.host_bytes <= p.host_usable_bytes else "[red]NO[/red]"
        table.add_row(
            "host RAM",
            fmt_gb(p.host_bytes),
            fmt_gb(p.host_usable_bytes),
            f"{p.n_env_workers} env workers (no model copy)",
            ok,
        )
    console.print(table)
    print_schedule(p)
    settings = ", ".join(
        f"{k}={'on' if v is True else 'off' if v is False else v}"
        + (" (override)" if k in p.overridden else "")
        for k, v in p.settings().items()
    )
    console.print(f"plan: {settings}", soft_wrap=True, highlight=False)
    verdict = "[green]fits[/green]" if p.fits else "[red]does not fit[/red]"
    console.print(f"verdict: {verdict}", highlight=False)
    console.print("reasons:")
    for r in p.reasons:
        console.print(f"  - {r}", soft_wrap=True, highlight=False, markup=False)


def print_strategies(costs: list[StrategyCost], chosen: str, recommended: str | None) -> None:
    """Every strategy's memory side by side: what trains, what is frozen, the
    update's extra state, activations, the prefix cache, and whether it fits."""
    table = Table(
        title="strategies (planner's own plan for each; per sample = per micro-batch of 1)"
    )
    cols = (
        "strategy",
        "trainable",
        "trainable / frozen weights",
        "grads",
        "AdamW state",
        "activations/sample (ckpt)",
        "prefix cache/sample",
        "update peak",
        "micro-batch",
        "fits",
        "",
    )
    for col in cols:
        table.add_column(col)
    for c in costs:
        p = c.plan
        mark = ", ".join(
            m
            for m, on in (
                ("chosen", c.strategy == chosen),
                ("recommended", c.strategy == recommended),
            )
            if on
        )
        table.add_row(
            c.strategy,
            f"{c.n_trainable / 1e6:,.4g}M",
            f"{fmt_gb(c.trainable_weight_bytes)} / {fmt_gb(c.frozen_weight_bytes)}",
            fmt_gb(c.grad_bytes),
            fmt_gb(c.optimizer_bytes),
            f"{fmt_gb(c.activations_per_sample)} ({fmt_gb(c.activations_per_sample_ckpt)})",
            fmt_gb(c.prefix_cache_per_sample),
            fmt_gb(p.peak_bytes["update"]),
            f"{p.train_micro_batch}{' ckpt' if p.activation_checkpointing else ''}",
            "[green]yes[/green]" if p.fits else "[red]NO[/red]",
            mark,
        )
    console.print(table)
