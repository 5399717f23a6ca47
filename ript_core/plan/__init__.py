"""The memory-aware planner: env workers, batch sizes, checkpointing, rollout schedule.

``plan(machine, policy, backend, rollouts_per_update=...)`` turns the
machine's memory and cores (:mod:`~ript_core.plan.machine`), the policy's and
the backend's footprints (:mod:`~ript_core.plan.footprint`) and the cost
model (:mod:`~ript_core.plan.cost`, :mod:`~ript_core.plan.phases`,
:mod:`~ript_core.plan.schedule`) into a :class:`ParallelPlan` with its
reasons (:mod:`~ript_core.plan.planner`, :mod:`~ript_core.plan.strategy`).
Plain arithmetic: plans are made for any machine without building a model.
The formulas are in ``docs/planner.md``.
"""

from ript_core.plan.cost import (
    ADAM_8BIT_BYTES_PER_TRAINABLE,
    ADAM_BYTES_PER_TRAINABLE,
    CALL_S_PER_LAYER_PASS,
    CHECKPOINT_BACKWARD_LAYERS,
    GRAD_BYTES_PER_TRAINABLE,
    MASTER_BYTES_PER_TRAINABLE,
    SAMPLE_FLOPS_PER_S,
    InferenceCost,
    fused_projection_bytes,
    grad_bytes,
    kv_cache_bytes,
    model_bytes,
    optimizer_state_bytes,
    optimizer_state_bytes_per_trainable,
    rollout_activation_bytes,
    sample_flops,
    update_activation_bytes,
)
from ript_core.plan.footprint import (
    OPTIMIZER_MOMENTS,
    BackendFootprint,
    PolicyFootprint,
    Strategy,
    TransformerDims,
    count_pi0_params,
)
from ript_core.plan.machine import (
    CUDA_FIXED_ALLOWANCE,
    HOST_FIXED_ALLOWANCE,
    MARGIN_FRACTION,
    MachineSpec,
    core_limit,
    detect_machine,
    usable_device_bytes,
    usable_host_bytes,
)
from ript_core.plan.parallel_plan import PLAN_FIELDS, ParallelPlan
from ript_core.plan.phases import ACTIVATION_CHECKPOINTING_AVAILABLE, PhaseBytes, phase_bytes
from ript_core.plan.planner import MIN_EFFICIENT_MICRO_BATCH, plan
from ript_core.plan.schedule import (
    PIPELINE_MIN_GAIN,
    PipelineOption,
    PipelinePlan,
    choose_pipeline,
    group_sizes,
    pipeline_option,
    round_batch_sizes,
)
from ript_core.plan.strategy import STRATEGY_PREFERENCE, recommend_strategy
from ript_core.plan.strategy_table import StrategyCost, strategy_costs
from ript_core.plan.units import GB, fmt_count, fmt_duration, fmt_gb

__all__ = [
    "ACTIVATION_CHECKPOINTING_AVAILABLE",
    "ADAM_8BIT_BYTES_PER_TRAINABLE",
    "ADAM_BYTES_PER_TRAINABLE",
    "CALL_S_PER_LAYER_PASS",
    "CHECKPOINT_BACKWARD_LAYERS",
    "CUDA_FIXED_ALLOWANCE",
    "GB",
    "GRAD_BYTES_PER_TRAINABLE",
    "HOST_FIXED_ALLOWANCE",
    "MARGIN_FRACTION",
    "MASTER_BYTES_PER_TRAINABLE",
    "MIN_EFFICIENT_MICRO_BATCH",
    "OPTIMIZER_MOMENTS",
    "PIPELINE_MIN_GAIN",
    "PLAN_FIELDS",
    "SAMPLE_FLOPS_PER_S",
    "STRATEGY_PREFERENCE",
    "BackendFootprint",
    "InferenceCost",
    "MachineSpec",
    "ParallelPlan",
    "PhaseBytes",
    "PipelineOption",
    "PipelinePlan",
    "PolicyFootprint",
    "Strategy",
    "StrategyCost",
    "TransformerDims",
    "choose_pipeline",
    "core_limit",
    "count_pi0_params",
    "detect_machine",
    "fmt_count",
    "fmt_duration",
    "fmt_gb",
    "fused_projection_bytes",
    "grad_bytes",
    "group_sizes",
    "kv_cache_bytes",
    "model_bytes",
    "optimizer_state_bytes",
    "optimizer_state_bytes_per_trainable",
    "phase_bytes",
    "pipeline_option",
    "plan",
    "recommend_strategy",
    "rollout_activation_bytes",
    "round_batch_sizes",
    "sample_flops",
    "strategy_costs",
    "update_activation_bytes",
    "usable_device_bytes",
    "usable_host_bytes",
]
