"""Scripted demonstrations and the BC warm start.

A backend's scripted expert (hook ``ript_scripted_expert``) is rolled out
in-process; each step becomes a BC sample: the policy input at time t and the
next ``chunk`` expert actions (padded past the episode's end, with a mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch

from ript_core.envs.interfaces import PolicyInput
from ript_core.plugins import get_registry
from ript_core.policy import NormStats, PI0Policy


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
        env = reg.make_env(backend, task, env_options)
        obs_adapter, _ = reg.default_adapters(backend, task, env_options)
        info = reg.task_info(backend, task)
        for i in init_states:
            rng = np.random.default_rng([seed, i, len(inputs)])
            obs, _ = env.reset(seed=seed + i, options={"init_state": i})
            for _ in range(info.settle_steps):
                obs, *_ = env.step(info.noop())
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
) -> list[float]:
    """Plain flow-matching BC with AdamW; returns the loss curve."""
    from tqdm.auto import tqdm

    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    losses = []
    bar = tqdm(range(steps), desc="BC warm start", disable=not progress, leave=False)
    for _ in bar:
        idx = rng.choice(len(demos), size=min(batch_size, len(demos)), replace=False)
        loss = bc_loss_on(policy, demos, idx, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return losses
