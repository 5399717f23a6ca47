"""Scripted demonstrations and the BC warm start.

A backend's scripted expert (its spec's ``scripted_expert``) is rolled out
in-process; each step becomes a BC sample: the policy input at time t and the
next ``chunk`` expert actions (padded past the episode's end, with a mask).

Demos recorded once (``ript record-demos``) are kept in one on-disk format that the
BC warm start reads back (``bc.demos_file``): see :func:`save_demos`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from ript_core.envs.interfaces import PolicyInput
from ript_core.plugins import get_registry
from ript_core.policy import NormStats, PI0Policy
from ript_core.rl.distributed_update import clip_grad_norm
from ript_core.rl.optimizer import make_adamw
from ript_core.rl.progress import progress as progress_bar


@attrs.define
class DemoSet:
    inputs: list[PolicyInput]
    chunks: np.ndarray  # [N, chunk, action_dim] expert actions (env units)
    is_pad: np.ndarray  # [N, chunk] bool
    episodes: int
    successes: int

    def __len__(self) -> int:
        return len(self.inputs)


def record_demos(
    backend: str,
    tasks: Sequence[str],
    init_states: Sequence[int],
    chunk: int,
    seed: int,
    noise: float = 0.0,
    env_options: dict | None = None,
) -> DemoSet:
    """Expert episodes on every (task, init state); only successful ones are kept."""
    reg = get_registry()
    inputs: list[PolicyInput] = []
    chunks, pads = [], []
    episodes = successes = 0
    for task in tasks:
        expert = reg.scripted_expert(backend, task)
        env = reg.make_settled_env(backend, task, env_options)
        obs_adapter, _ = reg.default_adapters(backend, task, env_options)
        info = reg.task_info(backend, task)
        for i in init_states:
            rng = np.random.default_rng([seed, i, len(inputs)])
            obs, _ = env.reset(seed=seed + i, options={"init_state": i})
            ep_inputs, ep_actions = [], []
            for _ in range(info.max_steps):
                action = np.asarray(expert(env.unwrapped, rng, noise), dtype=np.float32)
                ep_inputs.append(obs_adapter(obs))
                ep_actions.append(action)
                obs, _, term, trunc, step_info = env.step(action)
                if term or trunc or step_info["success"]:
                    break
            episodes += 1
            if not step_info["success"]:
                continue
            successes += 1
            acts = np.stack(ep_actions)
            for t in range(len(acts)):
                window = acts[t : t + chunk]
                pad = chunk - len(window)
                chunks.append(np.concatenate([window, np.repeat(window[-1:], pad, 0)]))
                pads.append(np.arange(chunk) >= len(window))
            inputs.extend(ep_inputs)
        env.close()
    if not inputs:
        raise RuntimeError(f"the scripted expert of {backend!r} succeeded on no demo episode")
    return DemoSet(inputs, np.stack(chunks), np.stack(pads), episodes, successes)


def fit_stats(policy: PI0Policy, demos: DemoSet) -> NormStats:
    states = np.stack([x.state for x in demos.inputs])
    actions = demos.chunks[~demos.is_pad]
    stats = NormStats.fit(states, actions)
    policy.set_stats(stats)
    return stats


def bc_loss_on(
    policy: PI0Policy, demos: DemoSet, idx: np.ndarray, gen: torch.Generator
) -> torch.Tensor:
    batch = policy.preprocess([demos.inputs[i] for i in idx])
    actions = torch.from_numpy(demos.chunks[idx]).to(policy.device)
    pad = torch.from_numpy(demos.is_pad[idx]).to(policy.device)
    return policy.bc_loss(batch, actions, pad, generator=gen)


def behaviour_clone(
    policy: PI0Policy,
    demos: DemoSet,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = True,
    moments: str = "fp32",
    stop_check: Callable[[int], bool] | None = None,
    check_every: int = 0,
) -> list[float]:
    """Plain flow-matching BC with AdamW (``moments``: see
    ript_core.rl.optimizer); returns the loss curve.

    With ``stop_check``, it is called with the step count after every
    ``check_every`` steps, and BC ends early when it returns True."""
    # float32 master weights for a bf16 policy (ript_core.rl.optimizer)
    opt, params = make_adamw(
        [p for p in policy.parameters() if p.requires_grad],
        moments=moments,
        lr=lr,
        weight_decay=0.0,
    )
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    losses = []
    bar = progress_bar(range(steps), "BC warm start", progress, leave=False)
    for step in bar:
        idx = rng.choice(len(demos), size=min(batch_size, len(demos)), replace=False)
        loss = bc_loss_on(policy, demos, idx, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(params, 1.0)  # torch's, or the global norm over FSDP shards
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        checking = stop_check is not None and done % check_every == 0 and done < steps
        if checking and stop_check(done):
            break
    return losses


# ---- on-disk format -------------------------------------------------------------

DEMO_FILE_FORMAT = 1


def save_demos(demos: DemoSet, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``demos`` as one ``.npz`` file (uncompressed numpy arrays).

    Keys (``N`` samples = steps of successful episodes, in episode order):

    - ``format``: ``1``; ``meta``: a JSON string (backend, tasks, init states,
      env options, ... whatever the recorder passed);
    - ``state`` ``[N, S]`` float: the adapted (policy-side) proprio state;
    - ``prompt`` ``[N]`` str; ``image/<slot>`` ``[N, H, W, 3]`` uint8 for every
      policy camera slot (all samples carry the same slots);
    - ``actions`` ``[N, D]`` float: the expert's env action at each step;
      ``episode`` ``[N]`` int32: which episode the step belongs to;
    - ``episodes``, ``successes``: the recording's episode counts.

    Action *chunks* are not stored: :func:`load_demos` cuts them for the
    policy's chunk size, so one file serves any chunk length.
    """
    if not demos.inputs:
        raise ValueError("no demonstrations to save")
    slots = sorted(demos.inputs[0].images)
    for x in demos.inputs:
        if sorted(x.images) != slots:
            raise ValueError(
                f"demo samples carry different camera slots: {slots} vs {sorted(x.images)}"
            )
    # the action at step t is the first row of step t's chunk; an episode's
    # last step is the one whose chunk holds a single real action
    if demos.is_pad.shape[1] < 2:
        raise ValueError("demos recorded with chunk 1 carry no episode boundaries; use chunk >= 2")
    last = demos.is_pad[:, 1]
    episode = np.concatenate([[0], np.cumsum(last)[:-1]]).astype(np.int32)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(DEMO_FILE_FORMAT),
        "meta": np.array(json.dumps(meta or {}, sort_keys=True)),
        "state": np.stack([x.state for x in demos.inputs]),  # dtype kept: a bit-exact reload
        "prompt": np.array([x.prompt for x in demos.inputs]),
        "actions": demos.chunks[:, 0],
        "episode": episode,
        "episodes": np.array(demos.episodes),
        "successes": np.array(demos.successes),
    }
    for slot in slots:
        arrays[f"image/{slot}"] = np.stack([x.images[slot] for x in demos.inputs])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
        np.savez(f, **arrays)
    return path


def _checked_meta(f: Any, path: str | Path) -> dict[str, Any]:
    fmt = int(f["format"]) if "format" in f else None
    if fmt != DEMO_FILE_FORMAT:
        raise ValueError(
            f"{path}: not a ript demo file of format {DEMO_FILE_FORMAT} (found {fmt}); "
            "record it with `ript record-demos`"
        )
    return json.loads(str(f["meta"]))


def demo_file_meta(path: str | Path) -> dict[str, Any]:
    """A :func:`save_demos` file's ``meta`` alone (backend, init states, ...),
    without reading its arrays: to check a file before a run starts."""
    with np.load(path, allow_pickle=False) as f:  # an .npz reads each array on access
        return _checked_meta(f, path)


def load_demos(path: str | Path, chunk: int) -> tuple[DemoSet, dict[str, Any]]:
    """Read a :func:`save_demos` file, cutting ``chunk``-long action windows
    exactly as :func:`record_demos` does. Returns ``(demos, meta)``."""
    with np.load(path, allow_pickle=False) as f:
        meta = _checked_meta(f, path)
        state, prompt, actions, episode = f["state"], f["prompt"], f["actions"], f["episode"]
        images = {k.removeprefix("image/"): f[k] for k in f.files if k.startswith("image/")}
        episodes, successes = int(f["episodes"]), int(f["successes"])
    inputs = [
        PolicyInput(
            images={slot: imgs[i] for slot, imgs in images.items()},
            state=state[i],
            prompt=str(prompt[i]),
        )
        for i in range(len(state))
    ]
    chunks, pads = [], []
    for ep in np.unique(episode):
        acts = actions[episode == ep]
        for t in range(len(acts)):
            window = acts[t : t + chunk]
            pad = chunk - len(window)
            chunks.append(np.concatenate([window, np.repeat(window[-1:], pad, 0)]))
            pads.append(np.arange(chunk) >= len(window))
    return DemoSet(inputs, np.stack(chunks), np.stack(pads), episodes, successes), meta
