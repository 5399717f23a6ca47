"""The RIPT training loop.

``Trainer(cfg).run()``:

0. check the config and the backend, refuse to overwrite a run (``--resume``
   continues one), build the policy once, the env workers, the optimizer;
1. (fresh runs) optional BC warm start on scripted demonstrations, then an
   evaluation on held-out init states, then checkpoint 0;
2. per iteration: RIPT's rollouts and update (:mod:`ript_core.rl.ript`) ->
   metrics -> checkpoint every ``checkpoint_every`` iterations;
3. a final evaluation.

Determinism: every episode's seed is a function of (run seed, rank,
iteration, sampling round, slot); every other random draw comes from a
generator whose state is checkpointed. A run killed at any instant and
resumed from its last checkpoint continues exactly as if uninterrupted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from safetensors import SafetensorError

from ript_core.config import unstructure
from ript_core.policy import PI0Policy, load_policy, save_policy
from ript_core.policy.activation_checkpointing import set_activation_checkpointing
from ript_core.policy.architecture_check import check_architecture
from ript_core.policy.fast.compiled_layers import compiled_layers
from ript_core.policy.strategies import trainable_parameters
from ript_core.rl import config_history, faults, run_plan
from ript_core.rl import distributed as D
from ript_core.rl import distributed_update as ranks
from ript_core.rl.actor import PI0Actor, fixed_size
from ript_core.rl.commtime import CommTimer
from ript_core.rl.config import TrainConfig
from ript_core.rl.contexts import Context, ContextSampler
from ript_core.rl.demos import DemoSet, bc_loss_on, behaviour_clone, fit_stats
from ript_core.rl.evaluate import EvalResult, evaluate
from ript_core.rl.faults import FAULT_COUNTERS, TrainingError, nonfinite_state
from ript_core.rl.fsdp import Sharding, save_full_policy
from ript_core.rl.host_threads import apply_rollout_threads
from ript_core.rl.metrics import MetricsLogger
from ript_core.rl.optimizer import make_adamw
from ript_core.rl.progress import print_above_progress
from ript_core.rl.progress import progress as progress_bar
from ript_core.rl.ript import Decision, collect_groups, episode_seed, loop_update
from ript_core.rl.rollout_setup import (
    journaled,
    rollout_setup,
    select_tasks,
    within_backend_limits,
)
from ript_core.rl.run_checkpoint import (
    find_resumable,
    has_checkpoints,
    latest_checkpoint,
    load_trainer_state,
    read_run_config,
    rng_state,
    save_checkpoint,
    set_aside,
    set_rng_state,
)
from ript_core.rl.run_dir import check_run_dir
from ript_core.rl.training_env import TrainingEnv
from ript_core.rl.warm_start import BCTarget, check_demo_source, warm_start_demos

log = logging.getLogger(__name__)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        progress: bool = True,
        allow_changes: tuple[str, ...] = (),
    ) -> None:
        cfg.check()
        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        self.cfg = cfg
        self.progress = progress
        self.dist = D.DistInfo.init_from_env()
        self.run_dir = Path(cfg.run_dir)

        # -- validate everything cheap before anything slow ---------------------
        task_set = select_tasks(cfg.env.backend, cfg.env.tasks)
        # what the backend declares (one env, operator prompts), not a special case here
        self.cfg = cfg = within_backend_limits(cfg)
        catalogue = task_set.catalogue
        self.tasks = task_set.tasks
        self.train_contexts = task_set.contexts(cfg.env.train_init_states, "env.train_init_states")
        self.eval_contexts = task_set.contexts(cfg.env.eval_init_states, "env.eval_init_states")
        self.bc_check_contexts = BCTarget.check_contexts(cfg, task_set, self.eval_contexts)
        leak = set(self.train_contexts) & set(self.eval_contexts)
        if leak:
            raise ValueError(
                f"{len(leak)} evaluation contexts are also training contexts (e.g. {min(leak)}); "
                "make env.train_init_states and env.eval_init_states disjoint"
            )
        ckpt = self._resumable(resume, allow_changes)
        if ckpt is None:  # a resumed run's demos are in its checkpoint
            check_demo_source(cfg, self.tasks, self.eval_contexts)

        # -- the one policy ---------------------------------------------------------
        torch.manual_seed(cfg.seed)
        if ckpt is not None:
            self.policy = load_policy(ckpt / "policy", **self._policy_overrides())
        elif cfg.init_checkpoint:
            self.policy = load_policy(cfg.init_checkpoint, **self._policy_overrides())
            check_architecture(cfg.policy, self.policy, f"init_checkpoint {cfg.init_checkpoint}")
        else:
            prompts = [catalogue[t].instruction for t in self.tasks]
            self.policy = PI0Policy.from_config(cfg.policy, prompts=prompts, seed=cfg.seed)
        # every checkpoint of this run records the env it trains in (for `ript eval`)
        self.policy.training_env = TrainingEnv.of_run(cfg, self.tasks).to_dict()
        # torch_threads null: 1 for a policy off the CPU, whose rollouts' env
        # workers need the cores that OpenMP's idle threads would spin on
        apply_rollout_threads(cfg.torch_threads, self.policy.device)
        # the plan decides "auto"; FSDP shards the loaded weights before the
        # optimizer sees them (it must hold the shards, not the full tensors)
        self.distributed, self.plan = run_plan.plan_distributed(cfg, self.policy, self.dist)
        if self.distributed == "fsdp" and cfg.policy.strategy != "full":
            raise TrainingError(
                f"policy.strategy={cfg.policy.strategy!r} with update.distributed=fsdp is not "
                "supported; set update.distributed: ddp (the expert/lora strategies exist to fit "
                "one device, so replicating them is the intended set-up)"
            )
        if self.distributed == "fsdp" and cfg.update.compile:
            raise TrainingError(
                "update.compile with update.distributed=fsdp is not supported (compiled layers "
                "are untested on sharded weights); set update.compile: false or use ddp"
            )
        self.sharding = Sharding(self.policy.model) if self.distributed == "fsdp" else None
        if cfg.policy.strategy != "full" and self.policy.base_checkpoint is None:
            # a fresh (random-init) policy: write its frozen base once, so that
            # every checkpoint stores only what trains and references it
            base = self.run_dir / "base_policy"
            if self.dist.is_main:
                save_policy(self.policy, base, as_base=True)
            D.barrier()
            self.policy.base_checkpoint = base.resolve()
        # the strategy's trainable parameters only: frozen tensors never reach
        # the optimizer, so they stay bit-identical (ript_core.policy.strategies)
        # bf16 parameters get float32 master copies (ript_core.rl.optimizer);
        # self.params are the tensors whose gradients the update clips and sums
        self.optimizer, self.params = make_adamw(
            trainable_parameters(self.policy),
            moments=cfg.optim.moments,
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

        rank = self.dist.rank
        self.sampler = ContextSampler(
            self.train_contexts,
            seed=episode_seed(cfg.seed, rank, 11),
            solved_window=cfg.ript.solved_window,
            solved_weight=cfg.ript.solved_weight,
        )
        self.update_rng = np.random.default_rng([cfg.seed, rank, 12])
        self.bc_rng = np.random.default_rng([cfg.seed, rank, 13])
        self.bc_gen = torch.Generator(device=self.policy.device).manual_seed(cfg.seed + 14)
        self.iteration = 0
        self.consecutive_skips = 0
        self.demos: DemoSet | None = None
        self.history: dict[str, Any] = {}

        self.micro_batch = cfg.update.micro_batch or self.plan.train_micro_batch
        # the plan's micro-batch assumes its checkpointing choice: apply it
        set_activation_checkpointing(self.policy.model, self.plan.activation_checkpointing)
        # update.time_comm (benchmarks): the update's collectives timed, FSDP's
        # own all-gathers and reduce-scatters included (ript_core.rl.commtime)
        self.comm_timer = CommTimer(self.policy.device) if cfg.update.time_comm else None
        self.fsdp_comm_timed = bool(
            self.sharding and self.comm_timer and self.sharding.time_collectives(self.comm_timer)
        )
        run_plan.write_plan(  # before the fit check: a refused plan is worth reading too
            self.run_dir,
            cfg,
            self.plan,
            self.dist,
            self.policy.device,
            self.micro_batch,
            distributed=self.distributed,
            fsdp_comm_timed=self.fsdp_comm_timed,
        )
        if not self.plan.fits:
            raise TrainingError(f"this run does not fit the machine:\n{self.plan.summary()}")
        in_process = cfg.rollout.n_workers == 0
        self.rollouts = rollout_setup(
            self.policy,
            {"train": "sde", "eval": cfg.eval.mode},
            env_workers=0 if in_process else self.plan.n_env_workers,
            in_process_envs=cfg.rollout.in_process_envs if in_process else 1,
            worker_timeout_s=cfg.rollout.worker_timeout_s,
            replan_every=cfg.env.replan_every,
            max_steps=cfg.env.max_steps,
            env_options=cfg.env.options,
            pipeline_groups=self.plan.pipeline_groups,
        )
        self.pool = self.rollouts.pool
        self.train_runner = journaled(self.rollouts.runners["train"], cfg.env.backend, self.run_dir)
        self.eval_runner = self.rollouts.runners["eval"]
        if ckpt is not None:
            self._restore(ckpt)
        if self.dist.is_main:
            config_history.record(
                self.run_dir,
                unstructure(cfg),
                self.iteration,
                resumed_from=ckpt.name if ckpt is not None else None,
                changes=self.config_changes,
            )
        # a resumed run's pool starts from 0 restarts: add those of the run before
        self.restarts_before = self.history.get("worker_restarts", 0)
        self.logger = MetricsLogger(
            self.run_dir,
            enabled=self.dist.is_main,
            tensorboard=cfg.tensorboard,
            wandb_project=cfg.wandb_project,
            config=unstructure(cfg),
            resume_iteration=self.iteration if ckpt is not None else None,
        )

    # -- helpers --------------------------------------------------------------------
    def _resumable(self, resume: bool, allow_changes: tuple[str, ...]) -> Path | None:
        """The checkpoint to resume from (the newest that verifies; the newer
        ones skipped are named and set aside), after checking that the config
        changes no more than ``allow_changes``; None for a fresh run."""
        self.config_changes: dict[str, Any] = {}
        self.allow_changes = allow_changes
        if not resume:
            if has_checkpoints(self.run_dir):
                raise TrainingError(
                    f"{self.run_dir} already holds checkpoints (latest: {self._latest_name()}); "
                    "pass --resume to continue that run or set run_dir to a new directory "
                    "(nothing was overwritten)"
                )
            check_run_dir(self.run_dir)  # before minutes of loading a policy, not after
            return None
        ckpt, skipped = find_resumable(self.run_dir)
        for name, why in skipped:
            if self.dist.is_main:
                log.warning("--resume: skipped %s: %s", name, why)
        if ckpt is None:
            why = "".join(f"; skipped {name}: {reason}" for name, reason in skipped)
            raise TrainingError(
                f"--resume: no complete checkpoint under {self.run_dir}/checkpoints{why}; "
                "start without --resume"
            )
        before = read_run_config(ckpt)
        if before is not None:  # checkpoints before run_config.json: checked in _restore
            self.config_changes = config_history.check_resume(
                before, unstructure(self.cfg), allow_changes, ckpt.name
            )
        check_run_dir(self.run_dir)
        if self.dist.is_main:
            set_aside(self.run_dir, [name for name, _ in skipped])
        D.barrier()
        return ckpt

    def _policy_overrides(self) -> dict[str, Any]:
        """Run-time policy settings that a loaded checkpoint does not decide."""
        p = self.cfg.policy
        return dict(
            noise_level=p.noise_level,
            sde_scheme=p.sde_scheme,
            sde_noise_region=p.sde_noise_region,
            logp_horizon=p.logp_horizon,
            logp_action_dims=p.logp_action_dims,
            train_vlm=p.train_vlm,
            strategy=p.strategy,
            lora=unstructure(p.lora),
            device=p.device,
            # the run's precision, not the file's: the plan, the optimizer's
            # master weights and the FSDP check all follow policy.dtype
            dtype=p.dtype,
        )

    def _gathered(self) -> contextlib.AbstractContextManager[None]:
        """Rollouts and evaluations: full weights on every rank under FSDP."""
        return self.sharding.gathered() if self.sharding else contextlib.nullcontext()

    def _clock(self) -> float:
        """``perf_counter``; with ``update.time_comm`` after a CUDA synchronise, so
        that a phase's time includes its queued GPU work."""
        if self.comm_timer is not None:
            self.comm_timer.sync()
        return time.perf_counter()

    def _comm_times(self, phase: str, kinds: tuple[str, ...] | None = None) -> dict[str, float]:
        assert self.comm_timer is not None
        return {
            f"time/{phase}_comm_{k}_s": v
            for k, v in self.comm_timer.collect().items()
            if kinds is None or k in kinds
        }

    def _lr_factor(self, it: int) -> float:
        o = self.cfg.optim
        if o.warmup_iterations and it < o.warmup_iterations:
            return (it + 1) / o.warmup_iterations
        if o.schedule == "cosine":
            span = max(1, self.cfg.ript.iterations - o.warmup_iterations)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (it - o.warmup_iterations) / span)))
        return 1.0

    def _state(self) -> dict[str, Any]:
        own = {
            "sampler": self.sampler.state_dict(),
            "update_rng": self.update_rng.bit_generator.state,
            "bc_rng": self.bc_rng.bit_generator.state,
            "bc_gen": self.bc_gen.get_state(),
            "rng": rng_state(),
        }
        return {
            "iteration": self.iteration,
            "distributed": self.distributed,
            # under FSDP: gathered on rank 0, keyed by parameter name (collective)
            "optimizer": (
                self.sharding.full_optimizer_state(self.optimizer)
                if self.sharding
                else self.optimizer.state_dict()
            ),
            "scheduler": self.scheduler.state_dict(),
            "ranks": D.gather_objects(own),
            "consecutive_skips": self.consecutive_skips,
            "history": self.history,
            "demos": self.demos,
            "config": unstructure(self.cfg),
        }

    def _restore(self, ckpt: Path) -> None:
        state = load_trainer_state(ckpt)
        if read_run_config(ckpt) is None:
            self.config_changes = config_history.check_resume(
                state["config"], unstructure(self.cfg), self.allow_changes, ckpt.name
            )
        if len(state["ranks"]) != self.dist.world_size:
            raise TrainingError(
                f"checkpoint {ckpt} was written by {len(state['ranks'])} ranks; resume it with "
                f"the same --nproc_per_node (got {self.dist.world_size})"
            )
        written = state.get("distributed", "ddp")
        if written != self.distributed:
            raise TrainingError(
                f"checkpoint {ckpt} was written with update.distributed={written!r}; this run "
                f"resolved to {self.distributed!r}: resume with update.distributed={written}"
            )
        self.iteration = state["iteration"]
        if self.sharding:
            self.sharding.load_optimizer_state(self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.consecutive_skips = state["consecutive_skips"]
        self.history = state["history"]
        self.demos = state["demos"]
        own = state["ranks"][self.dist.rank]
        self.sampler.load_state_dict(own["sampler"])
        self.update_rng.bit_generator.state = own["update_rng"]
        self.bc_rng.bit_generator.state = own["bc_rng"]
        self.bc_gen.set_state(own["bc_gen"])
        set_rng_state(own["rng"])
        if self.dist.is_main:
            log.info("resumed from %s at iteration %d", ckpt, self.iteration)

    def checkpoint(self) -> None:
        bad = nonfinite_state(self.params, self.optimizer)  # collective under FSDP
        if bad:
            raise TrainingError(
                f"iteration {self.iteration}: {bad} left non-finite values (NaN/inf) in the "
                f"policy; checkpoint not written, latest is still {self._latest_name()}. Likely "
                "cause: optim.lr too high, update.max_grad_norm or policy.noise_level; resume "
                "from latest with a lower optim.lr (--allow-change optim.lr)"
            )
        state = self._state()  # collective: every rank takes part
        # FSDP: the full weights, gathered onto rank 0 (collective)
        weights = self.sharding.full_state_dict() if self.sharding else None
        if self.dist.is_main:
            try:
                save_checkpoint(
                    self.run_dir,
                    self.iteration,
                    lambda d: (
                        save_policy(self.policy, d)
                        if weights is None
                        else save_full_policy(self.policy, weights, d)
                    ),
                    state,
                    keep=self.cfg.keep_checkpoints,
                    run_config=unstructure(self.cfg),
                )
            except (OSError, RuntimeError, SafetensorError) as exc:
                raise TrainingError(
                    f"could not write checkpoint iteration {self.iteration} under "
                    f"{self.run_dir}/checkpoints ({_first_line(exc)}); nothing written before was "
                    f"lost: latest is still {self._latest_name()}. Free disk space or fix the "
                    "directory's permissions, then continue with --resume"
                ) from None
        D.barrier()

    def say(self, msg: str) -> None:
        # results (evaluation tables, the summary) print even without progress bars
        if self.dist.is_main:
            print_above_progress(msg)

    # -- phases -----------------------------------------------------------------------
    def warm_start(self) -> None:
        bc = self.cfg.bc
        if not bc.demos_per_task and not bc.demos_file:
            return
        self.demos = warm_start_demos(self.cfg, self.tasks, self.policy.chunk_size)
        if self.policy.stats.source == "identity":
            fit_stats(self.policy, self.demos)
        target = None
        if bc.target_success > 0:
            target = BCTarget(
                bc.target_success,
                self.bc_check_contexts,
                self._evaluate_on,
                seed=self.cfg.seed + 5,
                log=self.logger.log,
                say=self.say,
            )
            self.history["bc_checks"] = target.checks
        # every rank clones on the same demos and batches: under FSDP the
        # reduce-scatter averages them, which equals one process's step
        with self.sharding.averaged_gradients() if self.sharding else contextlib.nullcontext():
            losses = behaviour_clone(
                self.policy,
                self.demos,
                bc.steps,
                bc.batch_size,
                bc.lr,
                self.cfg.seed,
                self.progress and self.dist.is_main,
                moments=self.cfg.optim.moments,
                stop_check=target.reached if target else None,
                check_every=bc.check_every,
            )
        self.say(
            f"BC warm start: {self.demos.successes}/{self.demos.episodes} expert demos, "
            f"{len(self.demos)} samples, {len(losses)} steps, loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f}"
        )
        self.history["bc_final_loss"] = float(np.mean(losses[-20:]))
        self.history["bc_steps"] = len(losses)
        if target and (warning := target.shortfall(bc.steps)):
            self.say(warning)
        self.logger.log(
            0, {"bc/steps": len(losses), "bc/final_loss": self.history["bc_final_loss"]}
        )

    def _evaluate_on(self, contexts: list[Context], episodes: int, seed: int) -> EvalResult:
        """ODE/eval-mode success on ``contexts``; under torchrun each rank runs its share."""
        mine = contexts[self.dist.rank :: self.dist.world_size]
        with self._gathered():
            result = evaluate(self.eval_runner, mine, episodes, seed=seed)
        if D.active():
            result = EvalResult.merged(D.gather_objects(result.tasks))
        return result

    def evaluate(self, tag: str) -> EvalResult:
        ev = self.cfg.eval
        result = self._evaluate_on(
            self.eval_contexts, ev.episodes_per_init_state, seed=self.cfg.seed + 7
        )
        self.say(f"evaluation ({tag}, {ev.mode}, held-out init states):\n{result.table()}")
        return result

    def collect_groups(self) -> tuple[list[Decision], dict[str, float]]:
        """This iteration's rollouts, as decisions with advantages (:mod:`ript_core.rl.ript`)."""
        return collect_groups(
            self.train_runner,
            self.sampler,
            self.cfg.ript,
            seed=(self.cfg.seed, self.dist.rank),
            iteration=self.iteration,
        )

    def update(self, decisions: list[Decision]) -> dict[str, float]:
        extra = None
        if self.cfg.bc.rl_coef > 0 and self.demos is not None:
            demos, coef = self.demos, self.cfg.bc.rl_coef

            def extra():
                idx = self.bc_rng.choice(
                    len(demos), size=min(self.cfg.bc.batch_size, len(demos)), replace=False
                )
                return coef * bc_loss_on(self.policy, demos, idx, self.bc_gen)

        norm_before = ranks.weight_norm(self.params)
        actor = PI0Actor(self.policy)
        log_prob, old_log_prob = actor.log_prob, actor.old_log_prob
        compiled = contextlib.nullcontext()
        if self.cfg.update.compile:
            compiled = compiled_layers(self.policy.model).installed()
            # one input shape for the compiled graphs, whatever is left over
            log_prob = fixed_size(log_prob, self.micro_batch)
            old_log_prob = fixed_size(old_log_prob, self.micro_batch)
        with compiled:
            out = loop_update(
                decisions,
                log_prob,
                self.params,
                self.optimizer,
                attrs.evolve(self.cfg.update, micro_batch=self.micro_batch),
                self.update_rng,
                extra_loss=extra,
                comm_timer=self.comm_timer,
                old_log_prob=old_log_prob if self.recompute_old_log_prob else None,
            )
        # the plan charges the gradients to the update phase only: free them
        # before the next rollouts need the room
        self.optimizer.zero_grad(set_to_none=True)
        # a lower bound of |w' - w| / |w| at the cost of one norm: no copy of the weights
        out["weight_norm_change"] = abs(ranks.weight_norm(self.params) - norm_before) / max(
            norm_before, 1e-12
        )
        return out

    @property
    def recompute_old_log_prob(self) -> bool:
        """``update.old_log_prob`` resolved: "auto" recomputes unless the
        policy runs in float32 (where sampler and update agree to ~1e-6)."""
        mode = self.cfg.update.old_log_prob
        if mode == "auto":
            return self.policy.dtype != torch.float32
        return mode == "recompute"

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.policy.device.type == "cpu":
            # a CPU run's numbers depend on these (docs/benchmarks.md, "Learning")
            self.say(
                f"CPU kernels: {torch.backends.cpu.get_cpu_capability()}, "
                f"{torch.get_num_threads()} torch thread(s)"
            )
        if self.iteration == 0 and "eval_before" not in self.history:
            self.warm_start()
            before = self.evaluate("before RIPT")
            self.history["eval_before"] = before.rate
            self.logger.log(0, before.metrics())
            if cfg.checkpoint_every:
                self.checkpoint()
        bar = progress_bar(
            range(self.iteration, cfg.ript.iterations),
            "RIPT",
            self.progress and self.dist.is_main,
            initial=self.iteration,
            total=cfg.ript.iterations,
        )
        for _ in bar:
            start = time.perf_counter()
            peaks = _DevicePeaks(self.policy.device)
            with self._gathered():  # once per iteration: ranks sample for different rounds
                decisions, metrics = self.collect_groups()
            times = {"time/rollout_s": self._clock() - start}
            peaks.phase_done("rollout")
            if self.comm_timer is not None:
                times.update(self._comm_times("rollout", ("all_gather",)))  # FSDP's gather
                # wait for the slowest rank's rollouts here, not inside the update's
                # first collective, so that time/update_s is the update's own
                waited = time.perf_counter()
                D.barrier()
                times["time/rollout_wait_s"] = time.perf_counter() - waited
            updating = self._clock()
            # under torchrun a rank without decisions still takes part: the update's
            # collectives (gradient sums, FSDP's gathers) need every rank
            upd = (
                self.update(decisions)
                if decisions or D.active()
                else {"optimizer_steps": 0, "skipped_steps": 0}
            )
            times["time/update_s"] = self._clock() - updating
            peaks.phase_done("update")
            if self.comm_timer is not None:
                times.update(self._comm_times("update"))
            if upd["optimizer_steps"]:
                self.scheduler.step()  # the schedule counts updates, not skipped ones
            self.iteration += 1  # the iteration the metrics log this update as
            self._check_update(upd)
            metrics.update(self._fault_counts(metrics))
            metrics.update({f"update/{k}": v for k, v in upd.items()})
            metrics["optim/lr"] = self.scheduler.get_last_lr()[0]
            metrics.update(times)
            metrics.update(peaks.metrics)
            keys = sorted(k for k in metrics if k.startswith(("train/", "ript/", "time/")))
            totals = D.sum_floats([float(metrics[k]) for k in keys])
            metrics.update({k: v / self.dist.world_size for k, v in zip(keys, totals, strict=True)})
            # rank 0's wall time from sampling to here, evaluations and checkpoints
            # excluded; the reduction above is a collective, so every rank ends about now
            metrics["time/iteration_s"] = time.perf_counter() - start
            if (
                cfg.eval.every
                and self.iteration % cfg.eval.every == 0
                and self.iteration < cfg.ript.iterations
            ):
                metrics.update(self.evaluate(f"iteration {self.iteration}").metrics())
            self.logger.log(self.iteration, metrics)
            bar.set_postfix(
                success=f"{metrics['train/success_rate']:.2f}", kept=metrics["ript/kept_groups"]
            )
            if cfg.checkpoint_every and (
                self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.ript.iterations
            ):
                self.checkpoint()
        after = self.evaluate("after RIPT")
        self.history["eval_after"] = after.rate
        self.logger.log(self.iteration, {**after.metrics(), "eval/final": 1})
        faults = {k: self.history.get(k, 0) for k in FAULT_COUNTERS}
        summary = {
            "success_before": self.history["eval_before"],
            "success_after": after.rate,
            "iterations": self.iteration,
            **faults,
        }
        self.say(
            f"success rate on held-out init states: {summary['success_before']:.1%} before RIPT -> "
            f"{summary['success_after']:.1%} after {self.iteration} iterations"
        )
        self.say("faults: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in faults.items()))
        return summary

    def _check_update(self, upd: dict[str, float]) -> None:
        """Count skipped steps and absurd weight moves (:mod:`ript_core.rl.faults`);
        stop after ``ript.max_consecutive_skips`` fully skipped updates."""
        faults.count_update(
            self.history,
            upd,
            iteration=self.iteration,
            lr=self.cfg.optim.lr,
            is_main=self.dist.is_main,
        )
        self.consecutive_skips = faults.consecutive_skips(
            upd, self.consecutive_skips, self.cfg.ript.max_consecutive_skips, self._latest_name()
        )

    def _fault_counts(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The ``faults/`` metrics: discarded episodes summed over ranks (a
        collective: every rank counts each iteration); worker restarts and skipped
        steps are rank 0's, whose pool and update it sees."""
        (discarded,) = D.sum_floats([float(metrics.get("rollout/discarded_episodes", 0))])
        # the pool's own count: workers replaced during rollouts and evaluations
        restarts = self.restarts_before + getattr(self.pool, "restarts", 0)
        return faults.fault_metrics(self.history, discarded, restarts)

    def _latest_name(self) -> str:
        latest = latest_checkpoint(self.run_dir)
        return latest.name if latest is not None else "none"

    def close(self) -> None:
        self.rollouts.close()
        self.logger.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class _DevicePeaks:
    """Peak GPU memory of each phase of an iteration (``memory/<phase>_peak_gb``:
    ``torch.cuda.max_memory_allocated``, this rank's), to set beside the plan's
    ``predicted_peak_gb``; nothing on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device if device.type == "cuda" else None
        self.metrics: dict[str, float] = {}
        if self.device is not None:
            torch.cuda.reset_peak_memory_stats(self.device)

    def phase_done(self, phase: str) -> None:
        if self.device is None:
            return
        self.metrics[f"memory/{phase}_peak_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        torch.cuda.reset_peak_memory_stats(self.device)
