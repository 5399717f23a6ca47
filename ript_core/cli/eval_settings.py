"""What ``ript eval`` evaluates: the command line over the checkpoint's training env.

A checkpoint written by ``ript train`` records the env it was trained in
(:class:`ript_core.rl.training_env.TrainingEnv`). Each setting the command
line leaves out comes from there -- backend, tasks, held-out init states,
env options, step budget, replanning interval, sampling mode -- and then
from the built-in defaults; a given setting that differs from the training
env's is used, with a warning (an evaluation under other conditions than
training is sometimes wanted, never silently).
"""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

import attrs

from ript_core.plugins import BUILTIN_BACKEND

DEFAULT_INIT_STATES = "0:"
DEFAULT_REPLAN_EVERY = 5
DEFAULT_MODE = "ode"


@attrs.frozen
class EvalSettings:
    backend: str
    tasks: list[str]  # empty: every task of the backend
    init_states: str
    env_options: dict[str, Any]
    replan_every: int
    max_steps: int | None
    mode: str
    # where the settings came from, and every given setting that differs from
    # the training env: printed before the evaluation starts
    notes: list[str]
    warnings: list[str]


def expand_tasks(names: list[str], catalogue: list[str]) -> list[str]:
    """``names`` with each shell-style pattern (``libero_spatial.*``) replaced by
    the catalogue's tasks it matches, in catalogue order; a pattern that matches
    nothing is an error (a misspelt suite would evaluate nothing)."""
    out: list[str] = []
    for name in names:
        if not any(c in name for c in "*?["):
            out.append(name)
            continue
        matched = fnmatch.filter(catalogue, name)
        if not matched:
            raise ValueError(f"--tasks {name!r} matches no task; `ript tasks BACKEND` lists them")
        out += [t for t in matched if t not in out]
    return out


def _untrained(ns: argparse.Namespace, options: dict[str, Any], why: str) -> EvalSettings:
    backend = ns.backend or BUILTIN_BACKEND
    tasks = list(ns.tasks or [])
    what = "the given tasks" if tasks else f"every task of {backend!r}"
    return EvalSettings(
        backend=backend,
        tasks=tasks,
        init_states=ns.init_states or DEFAULT_INIT_STATES,
        env_options=options,
        replan_every=ns.replan_every or DEFAULT_REPLAN_EVERY,
        max_steps=ns.max_steps,
        mode=ns.mode or DEFAULT_MODE,
        notes=[f"{why}: evaluating {what} with the default env settings"],
        warnings=[],
    )


def resolve_eval_settings(
    ns: argparse.Namespace, trained: Any | None, options: dict[str, Any]
) -> EvalSettings:
    """``ns``: ``ript eval``'s arguments, None where not given; ``trained``: the
    checkpoint's :class:`~ript_core.rl.training_env.TrainingEnv` or None;
    ``options``: the parsed ``--option`` items."""
    if trained is None:
        return _untrained(ns, options, "the checkpoint records no training env")
    if ns.backend is not None and ns.backend != trained.backend:
        settings = _untrained(
            ns,
            options,
            f"--backend {ns.backend}: the checkpoint was trained on {trained.backend!r}, whose "
            "tasks and env settings do not apply",
        )
        return attrs.evolve(settings, warnings=settings.notes, notes=[])

    warnings: list[str] = []

    def pick(flag: str, given: Any, setting: str, value: Any) -> Any:
        if given is None:
            return value
        if given != value:
            warnings.append(
                f"{flag} {given} differs from the training run's {setting} "
                f"({'unset' if value is None else value}): the "
                "evaluation runs under other conditions than training did"
            )
        return given

    if ns.tasks is None:
        tasks = list(trained.tasks)
        shown = ", ".join(tasks[:3]) + (f" and {len(tasks) - 3} more" if len(tasks) > 3 else "")
        notes = [
            f"tasks: {shown} of {trained.backend!r} -- the {len(tasks)} the checkpoint was "
            "trained on (--tasks NAME ... for others; --tasks alone for every task)"
        ]
    else:
        tasks = list(ns.tasks)
        what = "every task of the backend" if not tasks else f"{len(tasks)} given task(s)"
        notes = [f"tasks: {what}; the checkpoint was trained on {len(trained.tasks)}"]
    if ns.init_states is None:
        init_states = trained.eval_init_states
        notes.append(
            f"init states: {init_states} -- the run's held-out env.eval_init_states "
            "(--init-states to change)"
        )
    else:
        init_states = ns.init_states
    merged = dict(trained.options)
    for key, value in options.items():
        if key in trained.options and trained.options[key] != value:
            warnings.append(
                f"--option {key}={value} differs from the training run's env.options "
                f"{key}={trained.options[key]}: the evaluation runs under other conditions "
                "than training did"
            )
        merged[key] = value
    notes.append(
        "env settings: the training run's (env.options, env.max_steps, env.replan_every, "
        "eval.mode), stored with the checkpoint"
    )
    return EvalSettings(
        backend=trained.backend,
        tasks=tasks,
        init_states=init_states,
        env_options=merged,
        replan_every=pick(
            "--replan-every", ns.replan_every, "env.replan_every", trained.replan_every
        ),
        max_steps=pick("--max-steps", ns.max_steps, "env.max_steps", trained.max_steps),
        mode=pick("--mode", ns.mode, "eval.mode", trained.eval_mode),
        notes=notes,
        warnings=warnings,
    )
