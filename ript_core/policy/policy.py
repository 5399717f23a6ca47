"""PI0 as an RL policy: transformers' ``PI0ForConditionalGeneration`` plus
preprocessing, ODE/SDE sampling with exact chain log-probs, and a BC loss.

The model core is transformers' (Gemma, SigLIP, attention, prefix KV cache);
the policy only drives it. Its parts, one module each: construction and the
sampling dispatch (here), stats and pre/post-processing
(:mod:`.processing`), the forward halves (:mod:`.forward`), the eager
sampler and its noise draws (:mod:`.sampling`), re-scoring
(:mod:`.log_prob`) and behaviour cloning (:mod:`.bc`); the static-cache CUDA
graph sampler is :mod:`.fast.sampler`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import PI0ForConditionalGeneration

from ript_core.policy.attention import with_attention_backends
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.bc import BCMixin
from ript_core.policy.config import PolicyConfig
from ript_core.policy.fast.norms import use_fused_rms_norm
from ript_core.policy.fast.sampler import FastSampler
from ript_core.policy.forward import ForwardMixin
from ript_core.policy.io.pipeline import Pipeline
from ript_core.policy.io.presets import Architecture, resolve_architecture
from ript_core.policy.io.stats import NormStats
from ript_core.policy.io.tokenizer import (
    DEFAULT_WORDS,
    PromptTokenizer,
    build_word_tokenizer,
    load_tokenizer,
)
from ript_core.policy.log_prob import LogProbMixin
from ript_core.policy.model import build_model, drop_unused_expert_embedding, resolve_device
from ript_core.policy.precision import DTYPES, apply_precision
from ript_core.policy.processing import ProcessingMixin
from ript_core.policy.sampling import Generators, SampleOutput, draw_randn, sample_eager
from ript_core.policy.strategies import apply_strategy

# policy -> its FastSampler; weak so a dropped policy frees its graphs
_FAST_SAMPLERS: weakref.WeakKeyDictionary[PI0Policy, FastSampler] = weakref.WeakKeyDictionary()


class PI0Policy(ProcessingMixin, ForwardMixin, LogProbMixin, BCMixin, nn.Module):
    """A PI0 policy: ``preprocess -> sample / log_prob / bc_loss -> postprocess``."""

    def __init__(
        self,
        config: PolicyConfig,
        model: PI0ForConditionalGeneration,
        arch: Architecture,
        tokenizer: PromptTokenizer,
        stats: NormStats | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.arch = arch
        self.model = model
        self.tokenizer = tokenizer
        self._check_tokenizer()
        self.pipeline = pipeline if pipeline is not None else Pipeline()
        # checked now, not at the first rollout: slots that do not fit the model
        self.camera_slots = self.pipeline.camera_slots(arch.cameras)
        drop_unused_expert_embedding(model)
        self.dtype = DTYPES[config.dtype]
        apply_precision(model, self.dtype)
        if config.fused_norms:
            use_fused_rms_norm(model)
        model.to(resolve_device(config.device))
        self.stats = stats if stats is not None else self._identity_stats()
        self._check_stats(self.stats)
        # the checkpoint whose weights a lora/expert checkpoint's frozen part
        # is (ript_core.policy.strategies); None: not on disk yet
        self.base_checkpoint: Path | None = None
        # the env settings of the run that trained it (checkpoint.TRAINING_ENV_FILE);
        # saved and loaded with the policy, never read by it
        self.training_env: dict[str, Any] | None = None
        self.apply_trainable()

    # ---- construction ----------------------------------------------------------

    @classmethod
    def from_preset(
        cls,
        preset: str = "pi0-tiny",
        *,
        tokenizer: PromptTokenizer | None = None,
        prompts: Sequence[str] | None = None,
        stats: NormStats | None = None,
        seed: int | None = None,
        pipeline: Pipeline | None = None,
        **overrides: Any,
    ) -> PI0Policy:
        """Random-init policy of a named preset (``pi0``, ``pi0-tiny``).

        The tokenizer is, in order: ``tokenizer``; the one at
        ``overrides["tokenizer_path"]``; else a word-level tokenizer built from
        ``prompts`` plus a default list of manipulation words (see
        :func:`~ript_core.policy.io.tokenizer.build_word_tokenizer`). Without
        ``stats`` the normalisation is the identity (mean 0, std 1, eps 0) on
        ``state_dim``/``action_dim`` (default: the padded max dims) until
        :meth:`set_stats` installs fitted ones. ``pipeline`` (default: torch
        resize, openpi prompt format, no delta transform) is saved with it.
        """
        return cls.from_config(
            PolicyConfig(preset=preset, **overrides),
            tokenizer=tokenizer,
            prompts=prompts,
            stats=stats,
            seed=seed,
            pipeline=pipeline,
        )

    @classmethod
    def from_config(
        cls,
        config: PolicyConfig,
        *,
        tokenizer: PromptTokenizer | None = None,
        prompts: Sequence[str] | None = None,
        stats: NormStats | None = None,
        seed: int | None = None,
        pipeline: Pipeline | None = None,
    ) -> PI0Policy:
        arch = resolve_architecture(config)
        if tokenizer is None:
            if config.tokenizer_path is not None:
                tokenizer = load_tokenizer(config.tokenizer_path)
            else:
                tokenizer = build_word_tokenizer(prompts or (), extra_words=DEFAULT_WORDS)
        if seed is not None:
            torch.manual_seed(seed)
        model = build_model(arch, config)
        return cls(config, model, arch, tokenizer, stats, pipeline)

    # ---- properties --------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.action_out_proj.weight.device

    @property
    def chunk_size(self) -> int:
        return int(self.arch.pi0_config.chunk_size)

    @property
    def max_action_dim(self) -> int:
        return int(self.arch.pi0_config.max_action_dim)

    @property
    def max_state_dim(self) -> int:
        return int(self.arch.pi0_config.max_state_dim)

    @property
    def num_steps(self) -> int:
        return int(self.arch.pi0_config.num_inference_steps)

    @property
    def action_dim(self) -> int:
        """The real action dims (the checkpoint's), what :meth:`postprocess` keeps."""
        return self.stats.actions.dim

    @property
    def state_dim(self) -> int:
        return self.stats.state.dim

    @property
    def logp_horizon(self) -> int:
        return min(self.config.logp_horizon or self.chunk_size, self.chunk_size)

    @property
    def logp_action_dims(self) -> int:
        return min(self.config.logp_action_dims or self.action_dim, self.max_action_dim)

    # ---- trainable parts ------------------------------------------------------------

    def apply_trainable(self) -> None:
        """``requires_grad`` (and LoRA adapters) per ``config.strategy``, see
        :mod:`ript_core.policy.strategies`. ``full``: the expert and the
        action/state/time projections always; the VLM if ``train_vlm``; its
        vision tower and projector only if ``train_vision`` too."""
        apply_strategy(self)

    # ---- sampling ----------------------------------------------------------------

    def scored_region(self, device: torch.device | None = None) -> torch.Tensor:
        """``[chunk, max_action_dim]`` bool: the entries whose log-prob counts
        (first ``logp_horizon`` actions x first ``logp_action_dims`` dims)."""
        region = torch.zeros(self.chunk_size, self.max_action_dim, dtype=torch.bool, device=device)
        region[: self.logp_horizon, : self.logp_action_dims] = True
        return region

    @torch.no_grad()
    @with_attention_backends
    def sample(
        self,
        batch: PolicyBatch,
        mode: Literal["ode", "sde"] = "sde",
        generator: Generators = None,
        noise: torch.Tensor | None = None,
        *,
        noise_level: float | None = None,
        num_steps: int | None = None,
    ) -> SampleOutput:
        """Denoise one chunk per sample, encoding the prefix once.

        ``ode``: Euler from t=1 to t=0, identical to transformers'
        ``sample_actions`` for the same float32 ``noise``. ``sde``: each
        stochastic step draws ``x_{i+1} ~ N(mean, std^2)`` of
        :mod:`ript_core.policy.flow` (``sde_scheme`` "all" or "one"), with
        noise only in the scored region if ``sde_noise_region="scored"``.

        ``generator`` may be one generator per sample: each sample's noise then
        comes from its own stream, so its chunk does not depend on which other
        samples share the batch (what the rollout runner relies on).
        """
        if mode not in ("ode", "sde"):
            raise ValueError(f"mode must be 'ode' or 'sde', got {mode!r}")
        level = self.config.noise_level if noise_level is None else float(noise_level)
        steps = num_steps or self.num_steps
        bsz, device = len(batch), batch.device
        shape = (bsz, self.chunk_size, self.max_action_dim)
        if noise is None:
            noise = draw_randn(shape, generator, device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        elif noise.dtype != torch.float32:
            # x_1 is float32 whatever the model dtype; bf16 noise has already
            # lost its digits, so casting it up here would hide that
            raise ValueError(
                f"noise must be float32 (got {noise.dtype}); draw it with dtype=torch.float32"
            )
        x = noise.to(device=device, dtype=torch.float32)
        fast = self.fast_sampler()
        if fast is not None:
            # same maths and RNG order, static KV cache, one CUDA graph per chunk
            return fast.sample(batch, mode, generator, x, level, steps)
        return sample_eager(self, batch, mode, generator, x, level, steps)

    def fast_sampler(self) -> FastSampler | None:
        """The static-cache CUDA-graph sampler (:mod:`.fast.sampler`) if
        ``config.fast_sampler`` is on, the policy is on CUDA and its parameters
        are plain tensors; else ``None`` (:meth:`sample` runs eagerly). Kept
        outside the module's attributes: captured graphs are not state."""
        if not self.config.fast_sampler or self.device.type != "cuda":
            return None
        if not FastSampler.supported(self):
            return None
        fast = _FAST_SAMPLERS.get(self)
        if fast is None:
            fast = _FAST_SAMPLERS[self] = FastSampler(self, compile_layers=self.config.compile)
        return fast

    def expect_batch_sizes(self, sizes: Iterable[int]) -> None:
        """Batch sizes the caller will send again and again (a pipelined
        rollout runner's group calls, ``planner.round_batch_sizes``): the CUDA
        fast sampler gives each a graph of its own instead of padding it to
        the next power of two (3 groups of 43 envs would run as 64 each).
        Nothing changes where the fast sampler does not run."""
        fast = self.fast_sampler()
        if fast is not None:
            fast.batch_sizes.update(int(s) for s in sizes if int(s) > 0)
