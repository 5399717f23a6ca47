"""Deterministic tiny policy and decisions shared by tests and the torchrun worker."""

import numpy as np

from ript_core import make_env
from ript_core.envs.toy.adapters import make_adapters
from ript_core.policy import PI0Policy
from ript_core.rl.actor import PI0Actor
from ript_core.rl.loop import Decision


def tiny_policy(seed: int = 0) -> PI0Policy:
    return PI0Policy.from_preset(
        "pi0-tiny",
        prompts=["pick up the red block"],
        seed=seed,
        logp_horizon=5,
        logp_action_dims=3,
        action_dim=3,
        state_dim=3,
    )


def fixed_decisions(policy: PI0Policy, n: int = 8) -> list[Decision]:
    env = make_env("toy/reach-red")
    obs_adapter, _ = make_adapters()
    inputs = [obs_adapter(env.reset(options={"init_state": i})[0]) for i in range(n)]
    out = PI0Actor(policy, "sde").act(inputs, seeds=list(range(100, 100 + n)))
    adv = np.linspace(-1, 1, n)
    return [Decision(x, r, float(a)) for x, r, a in zip(inputs, out.records, adv, strict=True)]
