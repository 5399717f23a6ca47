"""The ``ript train`` config: one attrs class per section, loaded from YAML.

Every field has a default, so a config file only lists what it changes, and
``ript train cfg.yaml ript.group_size=8`` overrides any field.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, Literal

import attrs

from ript_core.plan.footprint import OPTIMIZER_MOMENTS
from ript_core.policy.config import PolicyConfig
from ript_core.policy.io.presets import preset_names

DistributedMode = Literal["ddp", "fsdp", "auto"]
DISTRIBUTED_MODES = ("ddp", "fsdp", "auto")


def parse_range(spec: str, n: int, setting: str = "init-state range") -> list[int]:
    """``"0:40"`` -> [0..39], ``"40:"`` -> [40..n-1], ``"3,5,7"`` -> [3, 5, 7].

    A range reaching past the ``n`` init states is an error, not cut short:
    ``setting`` (e.g. ``env.eval_init_states``) names the option in it."""
    fix = f"write start:stop, start: or a list like 3,5,7 within 0:{n}"
    try:
        if ":" in spec:
            lo, _, hi = spec.partition(":")
            start, stop = int(lo or 0), int(hi) if hi else n
            out = list(range(start, stop))
        else:
            out = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{setting} {spec!r} is not an init-state range: {fix}") from None
    bad = [i for i in out if not 0 <= i < n]
    if bad or not out:
        what = f"{len(bad)} init states outside 0:{n} (e.g. {bad[-1]})" if bad else "nothing"
        raise ValueError(f"{setting} {spec!r} selects {what}; the task has {n} init states: {fix}")
    return out


def _nonfinite_floats(obj: Any, path: str = "") -> list[str]:
    """``section.key = nan`` for every float field (or list item) that is NaN or inf."""
    out = []
    for field in attrs.fields(type(obj)):
        value, name = getattr(obj, field.name), f"{path}{field.name}"
        if attrs.has(type(value)):
            out += _nonfinite_floats(value, f"{name}.")
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                out.append(f"{name} = {v}")
    return out


def _float_ranges(cfg: TrainConfig) -> list[str]:
    """Every float setting outside the range it means something in."""
    checks = [
        (
            "policy.noise_level",
            cfg.policy.noise_level,
            0.0,
            False,
            "RIPT needs the SDE sampler's log-probs",
        ),
        ("policy.lora.alpha", cfg.policy.lora.alpha, 0.0, False, ""),
        ("update.clip", cfg.update.clip, 0.0, False, ""),
        ("update.max_grad_norm", cfg.update.max_grad_norm, 0.0, False, ""),
        ("optim.lr", cfg.optim.lr, 0.0, False, ""),
        ("optim.weight_decay", cfg.optim.weight_decay, 0.0, True, ""),
        ("ript.oversample", cfg.ript.oversample, 0.0, False, ""),
        ("ript.solved_weight", cfg.ript.solved_weight, 0.0, True, ""),
        ("rollout.worker_timeout_s", cfg.rollout.worker_timeout_s, 0.0, False, ""),
        ("bc.demo_noise", cfg.bc.demo_noise, 0.0, True, ""),
        ("bc.lr", cfg.bc.lr, 0.0, False, ""),
        ("bc.rl_coef", cfg.bc.rl_coef, 0.0, True, ""),
    ]
    out = []
    for name, value, low, inclusive, why in checks:
        if math.isfinite(value) and (value < low or (value == low and not inclusive)):
            bound = f">= {low:g}" if inclusive else f"> {low:g}"
            out.append(f"{name} must be {bound}, got {value:g}" + (f": {why}" if why else ""))
    out += [
        f"optim.betas[{i}] must be in [0, 1), got {b:g}"
        for i, b in enumerate(cfg.optim.betas)
        if math.isfinite(b) and not 0.0 <= b < 1.0
    ]
    if len(cfg.optim.betas) != 2:
        out.append(f"optim.betas must hold 2 values, got {cfg.optim.betas}")
    return out


def bitsandbytes_missing() -> str | None:
    """Why ``optim.moments: 8bit`` cannot run here, or None when it can."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return (
            "optim.moments '8bit' needs bitsandbytes, which is not installed: "
            "pip install 'ript-core[bnb]' (or set optim.moments: fp32)"
        )
    return None


@attrs.define
class EnvSection:
    backend: str = "toy"  # an installed backend (`ript plugins`)
    tasks: list[str] = attrs.Factory(list)  # empty: every task of the backend
    train_init_states: str = "0:40"  # which registered init states RIPT trains on
    eval_init_states: str = "40:"  # held out: evaluation only
    options: dict[str, Any] = attrs.Factory(dict)  # passed to the backend's env factory
    replan_every: int = 5  # env steps executed from each action chunk before the next
    max_steps: int | None = None  # None: the task's own budget


@attrs.define
class RolloutSection:
    n_workers: int | None = None  # None: the planner's choice; 0: envs in this process
    # With n_workers=0: how many envs to step in this process. For numpy-cheap
    # envs (the toy) an IPC round trip costs more than a step, so many
    # in-process envs feeding one large policy batch beat worker processes.
    in_process_envs: int = 1
    worker_timeout_s: float = 120.0  # an env worker silent this long is replaced
    # env worker groups stepped while the policy serves another group
    # (docs/planner.md); None: the planner's choice, 1: lock-step
    pipeline_groups: int | None = None


@attrs.define
class RiptSection:
    iterations: int = 20  # RIPT iterations: each collects groups, then one update
    group_size: int = 4  # K rollouts per context
    groups_per_iteration: int = 8  # informative groups wanted per update (per rank)
    max_sampling_rounds: int = 4  # rounds of context sampling per iteration before giving up
    oversample: float = 1.5  # contexts sampled per missing group in a round
    # a context solved (all K succeeded) in its last solved_window visits is
    # sampled with weight solved_weight: fewer wasted, uninformative groups
    solved_window: int = 2
    solved_weight: float = 0.1  # sampling weight of a solved context (see solved_window)
    max_consecutive_skips: int = 5  # non-finite updates in a row before the run stops
    # Benchmarks only: keep groups whose K rewards are all equal (zero advantage,
    # zero gradient, same update cost), so every iteration updates on exactly
    # groups_per_iteration groups even with a random-weight policy
    keep_uninformative_groups: bool = False


@attrs.define
class UpdateConfig:
    """The LOOP update (:func:`ript_core.rl.ript.loop_update`); every field in
    docs/training.md."""

    ppo_epochs: int = 1  # passes over the iteration's samples
    clip: float = 0.2  # PPO ratio clip: the ratio is kept in [1 - clip, 1 + clip]
    micro_batch: int | None = None  # None: the parallel planner's choice
    mini_batches: int = 1  # optimizer steps per epoch
    max_grad_norm: float = 1.0  # gradients are clipped to this global norm
    normalize_advantages: bool = False  # scale the leave-one-out advantages to unit std
    # "ddp" replicates and all-reduces; "fsdp" shards what does not fit one
    # device; "auto": fsdp only when the replicated plan does not fit
    distributed: DistributedMode = "ddp"
    # benchmarks only: it synchronises CUDA around the collectives it times
    time_comm: bool = False
    # recompute activations in backward so that the planner can size a bigger
    # micro-batch; "auto": when the plan needs it
    activation_checkpointing: str = "auto"
    # the ratio's denominator; "auto" recomputes unless float32, because in bf16
    # the sampler's and the update's kernels round differently
    old_log_prob: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "rollout", "recompute"))
    )
    # compiled layers for the update's passes: faster without checkpointing;
    # micro-batches are padded to one size so that it compiles once. Not with fsdp.
    compile: bool = False


@attrs.define
class OptimSection:
    lr: float = 1e-4  # AdamW learning rate of the RIPT updates
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: list[float] = attrs.Factory(lambda: [0.9, 0.999])  # AdamW's beta1, beta2
    warmup_iterations: int = 0  # linear learning-rate warm-up over this many iterations
    schedule: str = "constant"  # constant | cosine
    # how AdamW stores its two moments (ript_core.rl.optimizer): "fp32" (torch's
    # AdamW), or "8bit" (bitsandbytes' AdamW8bit: 2 instead of 8 bytes per trainable
    # parameter, ~19 GB less for full pi0 -- what lets its update run without
    # activation checkpointing on an 80 GB GPU; needs the [bnb] extra)
    moments: str = "fp32"


@attrs.define
class BCSection:
    demos_per_task: int = 0  # scripted demonstrations for a warm start (0: none)
    # a `ript record-demos` file to warm-start from instead of recording (demos_per_task ignored)
    demos_file: str | None = None
    demo_init_states: str = "0:40"  # init states the recorded demos start from
    demo_noise: float = 0.0  # the scripted expert's motion noise (std) while recording
    steps: int = 0  # BC optimizer steps before RIPT (0: no warm start)
    batch_size: int = 32  # BC samples per step
    lr: float = 1e-3  # BC learning rate
    rl_coef: float = 0.0  # weight of a BC term added to each RIPT update
    # Stop BC at the first check whose success on bc.check_init_states reaches
    # this (0: off; bc.steps is then the most steps): RIPT needs a partial
    # start, and where BC lands after a fixed step count swings with the seed
    # and the processor
    target_success: float = 0.0
    check_every: int = 200  # BC steps between success checks (with target_success)
    # init states the checks run on, one ODE episode each; not eval's, not the demos'
    check_init_states: str = ""


@attrs.define
class EvalSection:
    episodes_per_init_state: int = 1  # held-out episodes per eval init state
    every: int = 0  # evaluate every N iterations (0: before and after only)
    mode: str = "ode"  # ode: deterministic sampling; sde: the noisy sampler RIPT trains with
    videos: int = 0  # record this many MP4s per evaluation (needs imageio[ffmpeg])


@attrs.define
class TrainConfig:
    run_dir: str = "runs/ript"  # checkpoints, metrics.jsonl, TensorBoard files, config
    seed: int = 0  # seeds context sampling, env resets and the policy's noise
    init_checkpoint: str | None = None  # a saved policy directory; None: policy.preset
    policy: PolicyConfig = attrs.Factory(PolicyConfig)
    env: EnvSection = attrs.Factory(EnvSection)
    rollout: RolloutSection = attrs.Factory(RolloutSection)
    ript: RiptSection = attrs.Factory(RiptSection)
    update: UpdateConfig = attrs.Factory(UpdateConfig)
    optim: OptimSection = attrs.Factory(OptimSection)
    bc: BCSection = attrs.Factory(BCSection)
    eval: EvalSection = attrs.Factory(EvalSection)
    checkpoint_every: int = 5  # 0: never write a checkpoint (benchmarks; no resume)
    keep_checkpoints: int = 2  # older checkpoints are deleted beyond this many
    tensorboard: bool = True  # write TensorBoard event files in run_dir
    wandb_project: str | None = None  # also log to this Weights & Biases project
    # Intra-op CPU threads for torch. None: 1 with the policy on a GPU (the
    # host only stages copies, and OpenMP's idle threads would busy-wait on
    # the cores the env workers need: rl/host_threads.py), else torch's
    # default, the machine's cores. CPU results depend on it (reduction
    # order), so a CPU run that must reproduce its numbers pins it.
    torch_threads: int | None = None

    def check(self) -> None:
        """Cheap sanity checks, run before any env or model is built."""
        problems = []
        if self.ript.group_size < 2:
            problems.append("ript.group_size must be >= 2 (leave-one-out needs a group)")
        if self.optim.schedule not in ("constant", "cosine"):
            problems.append(f"optim.schedule {self.optim.schedule!r}: use 'constant' or 'cosine'")
        if self.optim.moments not in OPTIMIZER_MOMENTS:
            problems.append(f"optim.moments {self.optim.moments!r}: use 'fp32' or '8bit'")
        elif self.optim.moments == "8bit":
            missing = bitsandbytes_missing()
            if missing:
                problems.append(missing)
            if self.update.distributed == "fsdp":
                problems.append(
                    "optim.moments '8bit' with update.distributed 'fsdp' is not supported "
                    "(bitsandbytes steps plain tensors, not FSDP's sharded ones): use ddp"
                )
        if self.eval.mode not in ("ode", "sde"):
            problems.append(f"eval.mode {self.eval.mode!r}: use 'ode' or 'sde'")
        problems += [
            f"{bad}: every float setting must be a finite number" for bad in _nonfinite_floats(self)
        ]
        problems += _float_ranges(self)
        if self.policy.preset not in preset_names():
            problems.append(
                f"policy.preset {self.policy.preset!r} is unknown: use one of {preset_names()}"
            )
        warm_start = self.bc.steps and (self.bc.demos_per_task or self.bc.demos_file)
        sized = self.policy.state_dim is not None and self.policy.action_dim is not None
        if not (self.init_checkpoint or warm_start or sized):
            problems.append(
                "no normalisation stats for the env's state and actions: this run starts from "
                "policy.preset with no init_checkpoint and no BC warm start, which is where "
                "stats come from. Give one of: a BC warm start (bc.steps: 200 and "
                "bc.demos_per_task: 20, or bc.demos_file from `ript record-demos`: the demos "
                "fit the stats); an init_checkpoint (a saved policy carries its stats); or "
                "identity stats sized to the env (policy.state_dim and policy.action_dim: the "
                "length of the env's state vector and of its action space)"
            )
        if self.bc.demos_per_task and not self.bc.steps:
            problems.append("bc.demos_per_task > 0 but bc.steps == 0: set both or neither")
        if self.update.distributed not in DISTRIBUTED_MODES:
            problems.append(
                f"update.distributed {self.update.distributed!r}: use one of {DISTRIBUTED_MODES}"
            )
        if self.update.activation_checkpointing not in ("auto", "on", "off"):
            problems.append(
                f"update.activation_checkpointing {self.update.activation_checkpointing!r}: use "
                "'auto', 'on' or 'off'"
            )
        if self.update.activation_checkpointing == "on" and self.update.distributed == "fsdp":
            problems.append(
                "update.activation_checkpointing 'on' with update.distributed 'fsdp' is not "
                "supported (a recomputed layer would bypass FSDP's weight gathering): use ddp, "
                "or checkpointing off"
            )
        if self.update.compile and self.update.distributed == "fsdp":
            problems.append(
                "update.compile with update.distributed 'fsdp' is not supported (compiled "
                "layers are untested on sharded weights): use ddp, or update.compile false"
            )
        if self.update.distributed == "fsdp" and self.policy.dtype == "bfloat16":
            # bf16 training needs float32 master weights (ript_core.rl.optimizer),
            # which the FSDP path does not keep for its sharded parameters
            problems.append(
                "update.distributed 'fsdp' with policy.dtype 'bfloat16' is not supported "
                "(the sharded AdamW would step bf16 weights and round small updates away): use "
                "update.distributed 'ddp' (with policy.strategy 'expert' or 'lora' to fit a "
                "device) or policy.dtype 'float32' with fsdp"
            )
        if self.bc.demos_file and not self.bc.steps:
            problems.append("bc.demos_file is set but bc.steps == 0: set both or neither")
        if not 0.0 <= self.bc.target_success <= 1.0:
            problems.append(
                f"bc.target_success must be in [0, 1] (0: off), got {self.bc.target_success}"
            )
        if self.bc.target_success > 0:
            if not self.bc.check_init_states:
                problems.append(
                    "bc.target_success is set but bc.check_init_states is empty: name the init "
                    "states the BC checks run on, e.g. bc.check_init_states: '100:150' (training "
                    "states the demos do not start from, none of env.eval_init_states)"
                )
            if self.bc.check_every < 1:
                problems.append(f"bc.check_every must be >= 1, got {self.bc.check_every}")
            if not self.bc.steps:
                problems.append("bc.target_success is set but bc.steps == 0: no BC to stop")
        if self.checkpoint_every < 0:
            problems.append(
                f"checkpoint_every must be >= 0 (0: never), got {self.checkpoint_every}"
            )
        if self.torch_threads is not None and self.torch_threads < 1:
            problems.append(f"torch_threads must be >= 1 or null, got {self.torch_threads}")
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))
