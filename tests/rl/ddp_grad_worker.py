"""Run under torchrun (gloo): each rank re-scores its half of a fixed batch of
decisions; rank 0 saves the all-reduced gradient. Run alone, it uses the
whole batch. The test compares the two."""

import sys

import numpy as np
import torch

from ript_core.rl import distributed as D
from ript_core.rl import loop
from ript_core.rl.actor import PI0Actor
from ript_core.rl.loop import Decision, UpdateConfig, loop_update
from tests.rl.fixtures import fixed_decisions, tiny_policy

out = sys.argv[1]
info = D.DistInfo.init_from_env()
# many small buckets: the bucketed all-reduce's boundaries, in-place single
# gradients and flat copies all get exercised on the tiny policy
loop.ALL_REDUCE_BUCKET_NUMEL = 5000
policy = tiny_policy()
decisions = fixed_decisions(policy, n=8)
mine = decisions[info.rank :: info.world_size]
params = [p for p in policy.parameters() if p.requires_grad]
opt = torch.optim.SGD(params, lr=0.0)
loop_update(
    mine,
    PI0Actor(policy).log_prob,
    params,
    opt,
    UpdateConfig(micro_batch=3, max_grad_norm=1e9),
    np.random.default_rng(0),
)
if info.is_main:
    torch.save({n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}, out)
assert isinstance(mine[0], Decision)
D.shutdown()
