"""FSDP for the PI0 policy: shard what does not fit, replicate the rest.

``update.distributed = "fsdp"`` shards the policy with torch's FSDP2
(``fully_shard``). The policy never calls its root module's forward for the
prefix (``encode_prefix`` calls ``embed_prefix`` and the VLM directly), so a
root-level FSDP unit would never get its pre-forward all-gather at the right
time. Instead every module whose own ``forward`` the policy calls and that
holds most of the weights becomes its own FSDP unit:

- each SigLIP encoder layer, each Gemma (VLM) decoder layer, each expert
  decoder layer;
- the Gemma token embedding (527M parameters in full pi0; called directly
  through ``get_input_embeddings()``).

The small leftovers (patch/position embeddings, final norms, projector, the
action/state/time projections and the action head: 6.6M of 3.24B in pi0) stay
ordinary replicated tensors whose gradients ``distributed_update.all_reduce_grads``
sums, exactly as under DDP. Sharded gradients are reduce-scattered (summed: the
PPO loss is already divided by the global decision count) inside backward.

Only units that hold a trainable parameter are sharded: a frozen unit would
be all-gathered on every forward for nothing (rollouts gather everything
anyway, see :meth:`Sharding.gathered`).

Collective discipline: every FSDP forward all-gathers, every backward
reduce-scatters, so all ranks must run the same sequence of forwards and
backwards. The update pads ranks with fewer micro-batches
(:mod:`ript_core.rl.distributed_update`); rollouts, whose number of policy calls
differs per rank, run inside :meth:`Sharding.gathered`, where the weights are gathered
once and forwards communicate nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from ript_core.rl.commtime import CommTimer, TimedAllGather, TimedReduceScatter

DistributedMode = Literal["ddp", "fsdp", "auto"]
DISTRIBUTED_MODES = ("ddp", "fsdp", "auto")


def is_sharded(p: torch.Tensor) -> bool:
    return isinstance(p, DTensor)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules of a ``PI0ForConditionalGeneration`` that become FSDP units
    (module docstring), bottom-up, those without a trainable parameter left out."""
    vlm = model.model.vlm
    units: list[nn.Module] = [
        *vlm.vision_tower.encoder.layers,
        *vlm.language_model.layers,
        *model.model.dit.layers,
        vlm.language_model.embed_tokens,
    ]
    return [u for u in units if any(p.requires_grad for p in u.parameters())]


class Sharding:
    """The FSDP units of one policy and the collectives that span them."""

    def __init__(self, model: nn.Module) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "update.distributed='fsdp' needs torch.distributed: launch with "
                "torchrun --nproc_per_node N"
            )
        self.model = model
        self.units: list[FSDPModule] = []
        # The VLM decoder layers' keys and values leave them through the KV
        # cache, not through their outputs (which nothing reads), so FSDP's
        # pre-backward hook (registered on outputs) never re-gathers their
        # weights before autograd needs them. They stay gathered from the
        # prefix forward until their own backward reshards them.
        cache_writers = {id(m) for m in model.model.vlm.language_model.layers}
        self._reshard_after_forward: list[bool] = []
        for module in shard_units(model):
            reshard = id(module) not in cache_writers
            fully_shard(module, reshard_after_forward=reshard)
            assert isinstance(module, FSDPModule)
            self._reshard_after_forward.append(reshard)
            # sum, not FSDP's default mean: the loss is already normalised by the
            # global number of decisions, as the DDP path's all-reduce assumes
            module.set_gradient_divide_factor(1.0)
            # plain SUM reduce-scatters (scaling done separately): gloo has no
            # PREMUL_SUM, which FSDP would otherwise use for a custom factor
            module.set_force_sum_reduction_for_comms(True)
            self.units.append(module)

    # -- rollouts -------------------------------------------------------------------
    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        """Full weights on every rank for the duration (collective on entry and exit).

        Each rank then samples independently: its forwards find the weights
        already unsharded and communicate nothing, so ranks may make
        different numbers of policy calls. Costs one full copy of the
        sharded weights per rank, what DDP holds all the time.
        """
        for u in self.units:
            u.set_reshard_after_forward(False, recurse=False)
            u.unshard()
        try:
            yield
        finally:
            for u, reshard in zip(self.units, self._reshard_after_forward, strict=True):
                u.reshard()
                u.set_reshard_after_forward(reshard, recurse=False)

    # -- benchmarks -----------------------------------------------------------------
    def time_collectives(self, timer: CommTimer) -> bool:
        """Route every unit's all-gather and reduce-scatter through timed copies
        of FSDP's default ones (:mod:`ript_core.rl.commtime`). False, nothing
        installed, on a torch without FSDP2's custom-comm API (before 2.9)."""
        if not all(
            hasattr(u, "set_custom_all_gather") and hasattr(u, "set_custom_reduce_scatter")
            for u in self.units
        ):
            return False
        gather, scatter = TimedAllGather(timer), TimedReduceScatter(timer)
        for u in self.units:
            u.set_custom_all_gather(gather)
            u.set_custom_reduce_scatter(scatter)
        return True

    # -- gradients ------------------------------------------------------------------
    @contextlib.contextmanager
    def averaged_gradients(self) -> Iterator[None]:
        """Reduce-scatter means instead of sums: for work every rank repeats on
        identical data (BC warm start), which then equals one process's step."""
        world = dist.get_world_size()
        for u in self.units:
            u.set_gradient_divide_factor(float(world))
        try:
            yield
        finally:
            for u in self.units:
                u.set_gradient_divide_factor(1.0)

    # -- checkpoints (collective: every rank calls them) -----------------------------
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The unsharded weights on CPU, on rank 0 (other ranks get ``{}``)."""
        return get_model_state_dict(
            self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )

    def full_optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer state, unsharded, keyed by parameter name, on rank 0."""
        return get_optimizer_state_dict(
            self.model,
            optimizer,
            options=StateDictOptions(full_state_dict=True, cpu_offload=True),
        )

    def load_optimizer_state(
        self, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]
    ) -> None:
        """Load a :meth:`full_optimizer_state` on every rank; each keeps its shard.

        Done here rather than with ``set_optimizer_state_dict``, which needs
        an optimizer that has already stepped (it reads the device off the
        existing state) -- a resumed run's fresh AdamW has none. Every rank
        holds the full state (it read the checkpoint), so slicing out the
        local shard needs no communication.
        """
        names = {id(p): n for n, p in self.model.named_parameters()}
        saved_groups = state["param_groups"]
        if len(saved_groups) != len(optimizer.param_groups):
            raise ValueError(
                f"optimizer state has {len(saved_groups)} parameter groups, "
                f"the optimizer {len(optimizer.param_groups)}"
            )
        out: dict[str, Any] = {"state": {}, "param_groups": []}
        index = 0
        for saved, group in zip(saved_groups, optimizer.param_groups, strict=True):
            ids = []
            for p in group["params"]:
                name = names[id(p)]
                if name in state["state"]:
                    out["state"][index] = {
                        k: _like_param(v, p) for k, v in state["state"][name].items()
                    }
                ids.append(index)
                index += 1
            out["param_groups"].append(
                {**{k: v for k, v in saved.items() if k != "params"}, "params": ids}
            )
        optimizer.load_state_dict(out)


def _like_param(value: Any, param: torch.Tensor) -> Any:
    """A full optimizer-state tensor laid out like ``param`` (its local shard
    as a DTensor when ``param`` is sharded); scalars such as ``step`` as they are."""
    if not (isinstance(value, torch.Tensor) and value.dim() > 0 and is_sharded(param)):
        return value
    return distribute_tensor(
        value.to(param.device), param.device_mesh, param.placements, src_data_rank=None
    )


def save_full_policy(policy: Any, weights: Mapping[str, torch.Tensor], directory: Any) -> Any:
    """``save_policy`` with the gathered ``weights`` in place of the live
    (sharded) ones, so an FSDP run writes the same single-file checkpoint as
    one process. ``save_policy`` reads ``policy.model.state_dict()``, which
    under FSDP2 returns DTensor shards; that one method is shadowed for the
    duration of the call."""
    from ript_core.policy import save_policy

    model = policy.model
    model.state_dict = lambda *a, **k: dict(weights)
    try:
        return save_policy(policy, directory)
    finally:
        del model.state_dict


def sharded_trainable(model: nn.Module) -> int:
    """Trainable parameters that :class:`Sharding` would shard (counted before sharding)."""
    return sum(p.numel() for u in shard_units(model) for p in u.parameters() if p.requires_grad)


def fsdp_footprint(footprint: Any, model: nn.Module, world: int) -> Any:
    """The planner's footprint for one FSDP rank.

    The planner charges gradients and AdamW state (+ the fp32 master copy)
    per trainable parameter, so a rank's share is ``replicated + sharded /
    world`` trainable parameters. The weights stay counted in full: rollouts
    gather them (:meth:`Sharding.gathered`), and that is the rank's peak.
    """
    import attrs

    shard = min(sharded_trainable(model), footprint.n_trainable)
    per_rank = footprint.n_trainable - shard + -(-shard // world)
    return attrs.evolve(footprint, n_trainable=per_rank)
