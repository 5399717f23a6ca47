"""Run under torchrun (gloo): each rank re-scores its half of a fixed batch of
decisions; rank 0 saves the all-reduced gradient to OUT. Run alone, it uses the
whole batch. The test compares the two."""

import numpy as np
import torch

from ript_core.rl import distributed as D
from ript_core.rl import distributed_update
from ript_core.rl.actor import PI0Actor
from ript_core.rl.config import UpdateConfig
from ript_core.rl.ript import Decision, loop_update
from tests.rl.fixtures import fixed_decisions, tiny_policy, worker_output


def main() -> None:
    out = worker_output(__doc__)
    info = D.DistInfo.init_from_env()
    # many small buckets: the bucketed all-reduce's boundaries, in-place single
    # gradients and flat copies all get exercised on the tiny policy
    distributed_update.ALL_REDUCE_BUCKET_NUMEL = 5000
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
        grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
        torch.save(grads, out)
    assert isinstance(mine[0], Decision)
    D.exit_rank()  # an orderly end under torchrun (ript_core.rl.distributed.exit_rank)


if __name__ == "__main__":
    main()
