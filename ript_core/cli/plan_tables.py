"""The tables ``ript plan`` prints."""

from __future__ import annotations

from rich.table import Table

from ript_core.cli.console import console
from ript_core.plan import (
    MachineSpec,
    ParallelPlan,
    PolicyFootprint,
    StrategyCost,
    fmt_count,
    fmt_duration,
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
    cols = ["G", "envs/group", "period", *(["wave"] if waves else [])]
    for col in (*cols, "env steps/s", "policy busy", "envs busy", ""):
        table.add_column(col)
    for o in pipe.options:
        mark = (
            "chosen" + (" (override)" if pipe.overridden else "") if o.groups == pipe.groups else ""
        )
        table.add_row(
            str(o.groups),
            "/".join(str(n) for n in sorted(set(o.group_sizes), reverse=True)),
            fmt_duration(o.period_s),
            *([fmt_duration(o.wave_s)] if waves else []),
            f"{o.steps_per_s:,.0f}" if o.steps_per_s >= 10 else f"{o.steps_per_s:.2g}",
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
    console.print("reasons:")
    for r in p.reasons:
        console.print(f"  - {r}", soft_wrap=True, highlight=False, markup=False)


def print_verdict(p: ParallelPlan, fixes: list[str]) -> None:
    """The last lines a user reads: fits or not and, when not, the flags that make it fit."""
    if p.fits:
        console.print("verdict: [green]fits[/green]", highlight=False)
        return
    console.print("verdict: [red]does not fit[/red]", highlight=False)
    for fix in fixes:
        console.print(f"  fits with: {fix}", soft_wrap=True, highlight=False, markup=False)
    if not fixes:
        console.print(
            "  no single flag makes it fit: see the 'would fit' reasons above", highlight=False
        )


def print_strategies(costs: list[StrategyCost], chosen: str, recommended: str | None) -> None:
    """Every strategy's memory side by side, one column per strategy (three
    columns stay readable in an 80-column terminal): what trains, what is
    frozen, the update's extra state, activations, the prefix cache, and
    whether it fits."""
    table = Table(title="strategies (the planner's own plan for each)")
    table.add_column("")
    for c in costs:
        marks = [
            m
            for m, on in (
                ("chosen", c.strategy == chosen),
                ("recommended", c.strategy == recommended),
            )
            if on
        ]
        table.add_column(c.strategy + (f"\n({', '.join(marks)})" if marks else ""))
    rows = (
        ("trainable params", lambda c: fmt_count(c.n_trainable)),
        ("trainable weights", lambda c: fmt_gb(c.trainable_weight_bytes)),
        ("frozen weights", lambda c: fmt_gb(c.frozen_weight_bytes)),
        ("gradients", lambda c: fmt_gb(c.grad_bytes)),
        ("AdamW state", lambda c: fmt_gb(c.optimizer_bytes)),
        ("activations / sample", lambda c: fmt_gb(c.activations_per_sample)),
        ("  with checkpointing", lambda c: fmt_gb(c.activations_per_sample_ckpt)),
        ("prefix cache / sample", lambda c: fmt_gb(c.prefix_cache_per_sample)),
        ("update peak", lambda c: fmt_gb(c.plan.peak_bytes["update"])),
        (
            "micro-batch",
            lambda c: (
                f"{c.plan.train_micro_batch}"
                + (" (ckpt)" if c.plan.activation_checkpointing else "")
            ),
        ),
        ("fits", lambda c: "[green]yes[/green]" if c.plan.fits else "[red]NO[/red]"),
    )
    for label, cell in rows:
        table.add_row(label, *(cell(c) for c in costs))
    console.print(table)
