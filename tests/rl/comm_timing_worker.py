"""Under torchrun (gloo, 2 ranks): the update with ``update.time_comm`` timing
its collectives, against the same update untimed, for the DDP path (plain
policy, the hand-written all-reduce) and the FSDP path (sharded policy, FSDP's
all-gathers and reduce-scatters through ``Sharding.time_collectives``). Rank 0
saves both runs' gradients and the timer's seconds per kind to OUT."""

import numpy as np
import torch

from ript_core.rl import distributed as D
from ript_core.rl.actor import PI0Actor
from ript_core.rl.commtime import CommTimer
from ript_core.rl.config import UpdateConfig
from ript_core.rl.fsdp import Sharding, is_sharded
from ript_core.rl.ript import Decision, loop_update
from tests.rl.fixtures import fixed_decisions, tiny_policy, worker_output


def update(
    decisions: list[Decision], sharded: bool, timed: bool
) -> tuple[dict[str, torch.Tensor], dict[str, float], bool]:
    policy = tiny_policy()  # same seed: the same weights every time
    timer = CommTimer() if timed else None
    installed = False
    if sharded:
        sharding = Sharding(policy.model)
        installed = bool(timer) and sharding.time_collectives(timer)
    params = [p for p in policy.parameters() if p.requires_grad]
    loop_update(
        decisions,
        PI0Actor(policy).log_prob,
        params,
        torch.optim.SGD(params, lr=0.0),
        UpdateConfig(micro_batch=2, max_grad_norm=1e9, time_comm=timed),
        np.random.default_rng(0),
        comm_timer=timer,
    )
    grads = {
        n: (p.grad.full_tensor() if is_sharded(p.grad) else p.grad).detach().clone()
        for n, p in policy.model.named_parameters()
        if p.grad is not None
    }
    return grads, (timer.collect() if timer else {}), installed


def main() -> None:
    out = worker_output(__doc__)
    info = D.DistInfo.init_from_env()
    decisions = fixed_decisions(tiny_policy(), n=8)[info.rank :: info.world_size]
    result = {}
    for mode in ("ddp", "fsdp"):
        plain, _, _ = update(decisions, mode == "fsdp", timed=False)
        timed, seconds, installed = update(decisions, mode == "fsdp", timed=True)
        result[mode] = {"plain": plain, "timed": timed, "seconds": seconds, "installed": installed}
    if info.is_main:
        torch.save(result, out)
    D.exit_rank()  # an orderly end under torchrun (ript_core.rl.distributed.exit_rank)


if __name__ == "__main__":
    main()
