"""The FSDP check, run alone (reference: plain policy, whole batch) or under
torchrun (gloo, 2 ranks, the policy sharded with ``update.distributed=fsdp``).

Both runs re-score the same 8 decisions (each rank its half), take one
clipped AdamW step, and write to ``OUT/<tag>/`` (OUT: the one argument): the
gradients after the reduce and the clip (full tensors), the weights and the
AdamW moments after the step (by parameter name), the grad norm, a sampled
chain, and (rank 0) the policy checkpoint. Under torchrun the ranks also make
different numbers of sampling calls inside ``Sharding.gathered`` (would deadlock if a forward
communicated), and the optimizer state goes through the checkpoint path:
gathered, saved, loaded into a fresh optimizer on every rank, gathered again.
"""

import contextlib

import numpy as np
import torch

from ript_core.rl import distributed as D
from ript_core.rl.actor import PI0Actor
from ript_core.rl.config import UpdateConfig
from ript_core.rl.distributed_update import clip_grad_norm
from ript_core.rl.fsdp import Sharding, is_sharded, save_full_policy
from ript_core.rl.ript import loop_update
from tests.rl.fixtures import fixed_decisions, tiny_policy, worker_output

MAX_GRAD_NORM = 0.05  # below the gradient's norm: the clip must engage


def full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if is_sharded(t) else t).detach().clone()


def main() -> None:
    out = worker_output(__doc__)
    info = D.DistInfo.init_from_env()
    policy = tiny_policy()
    decisions = fixed_decisions(policy, n=8)
    sharding = Sharding(policy.model) if info.world_size > 1 else None
    assert (
        sharding is None or len(sharding.units) == 7
    )  # 2 SigLIP + 2 Gemma + 2 expert layers + embedding

    names = {id(p): n for n, p in policy.model.named_parameters()}
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    mine = decisions[info.rank :: info.world_size]
    if info.rank == 1:
        mine = mine[:1]  # uneven: rank 1 re-scores 1 decision, rank 0 the other 7
    elif info.world_size > 1:
        mine = decisions[0::2] + decisions[1::2][1:]
    metrics = loop_update(
        mine,
        PI0Actor(policy).log_prob,
        params,
        opt,
        UpdateConfig(micro_batch=2, max_grad_norm=MAX_GRAD_NORM),
        np.random.default_rng(0),
    )

    grads = {names[id(p)]: full(p.grad) for p in params if p.grad is not None}
    weights = {n: full(p) for n, p in policy.model.named_parameters()}
    moments = {
        names[id(p)]: {k: full(v) for k, v in opt.state[p].items() if k != "step"} for p in params
    }
    n_sharded = sum(is_sharded(p) for p in params)

    # sampling: one chunk per decision input, rank 0 in one call, rank 1 in two calls
    inputs = [d.policy_input for d in decisions[:2]]
    actor = PI0Actor(policy, "sde")
    if sharding is None:
        chain = actor.act(inputs, seeds=[5, 6]).records[0]["chain"]
    else:
        with sharding.gathered():
            if info.rank == 0:
                chain = actor.act(inputs, seeds=[5, 6]).records[0]["chain"]
            else:
                chain = actor.act(inputs[:1], seeds=[5]).records[0]["chain"]
                actor.act(inputs[1:], seeds=[6])
        assert all(is_sharded(p) for p in sharding.units[0].parameters())  # resharded after

    # BC warm start: every rank computes the same loss on the same batch; under
    # averaged_gradients the reduce-scatter means them (replicated leftovers are
    # identical without any reduce), so the clipped gradient equals one process's
    opt.zero_grad(set_to_none=True)
    with sharding.averaged_gradients() if sharding else contextlib.nullcontext():
        batch = policy.preprocess([d.policy_input for d in decisions[:4]])
        actions = torch.linspace(-1, 1, 4 * policy.chunk_size * 3).reshape(4, policy.chunk_size, 3)
        policy.bc_loss(batch, actions, generator=torch.Generator().manual_seed(3)).backward()
    bc_norm = float(clip_grad_norm(params, 0.5))
    bc_grads = {names[id(p)]: full(p.grad) for p in params if p.grad is not None}

    tag = out / ("two" if sharding else "one")
    tag.mkdir(parents=True, exist_ok=True)
    if sharding is None:
        from ript_core.policy import save_policy

        save_policy(policy, tag / "policy")
        optim_roundtrip = True
    else:
        state = sharding.full_optimizer_state(opt)  # collective
        full_weights = sharding.full_state_dict()  # collective
        if info.is_main:
            save_full_policy(policy, full_weights, tag / "policy")
            torch.save(state, tag / "optim.pt")
        D.barrier()
        # resume path: every rank loads the full state into a fresh optimizer
        fresh = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
        sharding.load_optimizer_state(fresh, torch.load(tag / "optim.pt", weights_only=False))
        again = sharding.full_optimizer_state(fresh)
        optim_roundtrip = not info.is_main or (
            again["state"].keys() == state["state"].keys()
            and all(
                torch.equal(again["state"][k][m], state["state"][k][m])
                for k in state["state"]
                for m in state["state"][k]
            )
        )
    if info.is_main:
        torch.save(
            {
                "grads": grads,
                "weights": weights,
                "moments": moments,
                "grad_norm": metrics["grad_norm"],
                "bc_grads": bc_grads,
                "bc_norm": bc_norm,
                "optimizer_steps": metrics["optimizer_steps"],
                "chain": chain,
                "n_sharded": n_sharded,
                "optim_roundtrip": optim_roundtrip,
                "optim_state": state if sharding else None,
            },
            tag / "result.pt",
        )
    D.exit_rank()  # an orderly end under torchrun (ript_core.rl.distributed.exit_rank)


if __name__ == "__main__":
    main()
