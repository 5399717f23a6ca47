"""PI0 as an RL policy: transformers' ``PI0ForConditionalGeneration`` plus
preprocessing, ODE/SDE sampling with exact chain log-probs, and a BC loss.

The model core is transformers' (Gemma, SigLIP, attention, prefix KV cache);
this class only drives it. Its sampling loop mirrors ``sample_actions``
operation for operation so that ``mode="ode"`` reproduces it bit for bit,
and the same loop with Gaussian transitions (:mod:`ript_core.policy.flow`)
gives the stochastic sampler whose chain :meth:`PI0Policy.log_prob`
re-scores with gradients.

Input convention of transformers' PI0 (5.24): ``input_ids`` are
``image_token_id`` placeholders (tokens-per-image x cameras) followed by the
text ids; ``attention_mask`` is *always* passed -- with ``None`` the prefix
gets 1-indexed RoPE positions while the expert continues from the cache
length (DESIGN §6), and padded prompt tokens would be attended. A missing
camera keeps its tokens (masked out in ``attention_mask``, positions
``cumsum(mask) - 1`` skip them, as openpi), so ``pixel_attention_mask`` is
all True for the slots present in ``input_ids``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PI0ForConditionalGeneration

from ript_core.policy.attention import with_attention_backends
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.checkpointing import activation_checkpointing, frozen_view, recording_cache
from ript_core.policy.config import PolicyConfig
from ript_core.policy.fast_sampler import FastSampler
from ript_core.policy.flow import (
    StepCoefficients,
    euler_step,
    gaussian_log_prob,
    sde_mean,
    take_step,
)
from ript_core.policy.images import to_model_range
from ript_core.policy.kv_only_layer import last_layer_kv_only
from ript_core.policy.norms import use_fused_rms_norm
from ript_core.policy.pipeline import Pipeline
from ript_core.policy.precision import DTYPES, apply_precision
from ript_core.policy.preprocess import preprocess
from ript_core.policy.presets import Architecture, resolve_architecture
from ript_core.policy.stats import NormStats
from ript_core.policy.tokenizer import (
    DEFAULT_WORDS,
    PromptTokenizer,
    build_word_tokenizer,
    load_tokenizer,
)
from ript_core.policy_input import PolicyInput

log = logging.getLogger(__name__)

# policy -> its FastSampler; weak so a dropped policy frees its graphs
_FAST_SAMPLERS: weakref.WeakKeyDictionary[PI0Policy, FastSampler] = weakref.WeakKeyDictionary()


@attrs.frozen
class SampleOutput:
    """One action chunk per sample and what re-scoring it needs.

    - ``actions`` ``[B, chunk, max_action_dim]`` float32, normalised (``x_0``);
    - ``chain`` ``[B, num_steps + 1, chunk, max_action_dim]`` float32:
      ``x_1`` (the initial noise) ... ``x_0``;
    - ``log_prob`` ``[B]`` float32: log-density of the chain's stochastic
      transitions over the scored entries (zeros for ``ode`` or noise level 0);
    - ``stochastic_step`` ``[B]`` long for ``sde_scheme="one"`` (which
      transition was stochastic), ``None`` when every step was (``"all"``) or
      none was (``ode``). Pass it to :meth:`PI0Policy.log_prob`.
    """

    actions: torch.Tensor
    chain: torch.Tensor
    log_prob: torch.Tensor
    stochastic_step: torch.Tensor | None
    mode: str
    noise_level: float


class PI0Policy(nn.Module):
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
        :func:`~ript_core.policy.tokenizer.build_word_tokenizer`). Without
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

    # ---- stats / trainable parts -----------------------------------------------

    def _identity_stats(self) -> NormStats:
        return NormStats.identity(
            self.config.state_dim or self.max_state_dim,
            self.config.action_dim or self.max_action_dim,
        )

    def _check_stats_dims(self, stats: NormStats) -> None:
        if stats.state.dim > self.max_state_dim or stats.actions.dim > self.max_action_dim:
            raise ValueError(
                f"stats have state/action dims {stats.state.dim}/{stats.actions.dim}, the model "
                f"takes at most {self.max_state_dim}/{self.max_action_dim}"
            )
        for name, want, have in (
            ("state_dim", self.config.state_dim, stats.state.dim),
            ("action_dim", self.config.action_dim, stats.actions.dim),
        ):
            if want is not None and want != have:
                raise ValueError(
                    f"config {name}={want} but the normalisation stats have {have} dims"
                )

    def _check_stats(self, stats: NormStats) -> None:
        self._check_stats_dims(stats)
        mask = self.pipeline.delta_action_mask
        if mask is not None and len(mask) > min(stats.actions.dim, stats.state.dim):
            raise ValueError(
                f"the pipeline's delta_action_mask covers {len(mask)} dims but the stats have "
                f"{stats.actions.dim} action and {stats.state.dim} state dims; the mask may be "
                "at most as long as both"
            )

    def set_stats(self, stats: NormStats) -> None:
        """Install normalisation stats (e.g. fitted on demonstrations before BC)."""
        self._check_stats(stats)
        self.stats = stats

    def _check_tokenizer(self) -> None:
        if self.tokenizer.vocab_size > self.arch.text_vocab_size:
            raise ValueError(
                f"tokenizer has {self.tokenizer.vocab_size} tokens, the model's text vocabulary "
                f"only {self.arch.text_vocab_size}"
            )

    def apply_trainable(self) -> None:
        """``requires_grad`` (and LoRA adapters) per ``config.strategy``, see
        :mod:`ript_core.policy.strategies`. ``full``: the expert and the
        action/state/time projections always; the VLM if ``train_vlm``; its
        vision tower and projector only if ``train_vision`` too."""
        from ript_core.policy.strategies import apply_strategy

        apply_strategy(self)

    def _vlm_needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(
            p.requires_grad for p in self.model.model.vlm.parameters()
        )

    # ---- pre / post processing ----------------------------------------------------

    def preprocess(self, inputs: Sequence[PolicyInput]) -> PolicyBatch:
        """Env inputs -> a batch on the policy's device (see :mod:`.preprocess`),
        with the checkpoint pipeline's camera slots, resampler and prompt format."""
        return preprocess(
            inputs,
            cameras=self.camera_slots,
            image_size=self.arch.image_size,
            tokenizer=self.tokenizer,
            max_token_len=self.arch.max_token_len,
            stats=self.stats,
            max_state_dim=self.max_state_dim,
            device=self.device,
            resize=self.pipeline.resize,
            prompt_format=self.pipeline.prompt_format,
        )

    def postprocess(self, actions: torch.Tensor, batch: PolicyBatch | None = None) -> np.ndarray:
        """Normalised ``[B, chunk, max_action_dim]`` -> env-unit ``[B, chunk,
        action_dim]`` float32 numpy: un-normalised, made absolute where the
        pipeline's ``delta_action_mask`` says so, sliced to the real dims.

        The delta transform adds the state the chunk was computed from, in
        openpi's form: ``batch.state`` (the normalised float32 model input)
        un-normalised in float64. So ``batch`` -- the one ``actions`` were
        sampled from -- is required when the pipeline has a delta mask. All
        arithmetic is float64 (openpi's numpy output transforms), cast once.
        """
        real = actions[..., : self.action_dim].detach()
        out = self.stats.unnormalize(real, "actions", dtype=torch.float64)
        mask = self.pipeline.delta_action_mask
        if mask is not None:
            if batch is None:
                raise ValueError(
                    f"this checkpoint's pipeline ({self.pipeline.origin}) adds the state to the "
                    "actions (delta_action_mask): call postprocess(actions, batch) with the batch "
                    "the actions were sampled from"
                )
            if len(batch) != out.shape[0]:
                raise ValueError(
                    f"postprocess got {out.shape[0]} action chunks but a batch of {len(batch)}"
                )
            state = self.stats.unnormalize(
                batch.state[..., : self.state_dim].to(out.device), "state", dtype=torch.float64
            )
            n = len(mask)
            keep = torch.tensor(mask, dtype=torch.bool, device=out.device)
            delta = torch.where(keep, state[..., :n], torch.zeros_like(state[..., :n]))
            out = out.clone()
            out[..., :n] += delta[:, None, :]
        return out.to(torch.float32).cpu().numpy()

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw ``[..., action_dim]`` -> normalised and zero-padded to ``max_action_dim``."""
        normed = self.stats.normalize(actions.to(self.device), "actions")
        return F.pad(normed, (0, self.max_action_dim - normed.shape[-1]))

    def model_inputs(self, batch: PolicyBatch) -> dict[str, torch.Tensor]:
        """The keyword arguments transformers' PI0 takes, from a batch."""
        images, image_masks = batch.images, batch.image_masks
        if self.config.drop_missing_cameras:
            # host booleans when preprocessing recorded them: reading the
            # device masks would wait for the GPU (batch.py)
            present = batch.cameras_present
            if present is None:
                present = tuple(bool(x) for x in image_masks.any(dim=0).tolist())
            # no camera at all: one fully masked slot is kept
            keep = list(present) if any(present) else [True] + [False] * (len(present) - 1)
            if not all(keep):
                # slices, not a list index (whose copy to the GPU would sync)
                slots = [c for c, k in enumerate(keep) if k]
                images = torch.cat([images[:, c : c + 1] for c in slots], dim=1)
                image_masks = torch.cat([image_masks[:, c : c + 1] for c in slots], dim=1)
        bsz, n_cam = image_masks.shape
        tpi = self.arch.tokens_per_image
        image_ids = torch.full(
            (bsz, n_cam * tpi), self.arch.image_token_id, dtype=torch.long, device=batch.device
        )
        attention_mask = torch.cat(
            [image_masks.repeat_interleave(tpi, dim=1), batch.token_masks], dim=1
        ).long()
        return {
            "input_ids": torch.cat([image_ids, batch.tokens], dim=1),
            "attention_mask": attention_mask,
            "pixel_values": to_model_range(images, self.dtype),
            "pixel_attention_mask": torch.ones(bsz, n_cam, dtype=torch.bool, device=batch.device),
            # float32 even under bf16: the state projection stays float32 (precision.py)
            "state": batch.state,
        }

    # ---- the two halves of a forward ---------------------------------------------

    def encode_prefix(self, inputs: dict[str, torch.Tensor]) -> tuple[Any, int]:
        """Run the VLM once over images + prompt; returns ``(kv_cache, prefix_len)``.

        Gradients flow into the VLM only if grad mode is on and some VLM
        parameter is trainable; otherwise the prefix is computed without a graph.
        """
        grad = self._vlm_needs_grad()
        # under activation checkpointing a recomputed layer must find the cache
        # as it was: a recording cache for the prefix, a frozen view for the
        # expert (ript_core.policy.checkpointing)
        ckpt = activation_checkpointing(self.model)
        # the last Gemma layer only fills the cache: the rest of it is dead
        # work for PI0 (kv_only_layer.py), and so is last_hidden_state
        lm = self.model.model.vlm.language_model
        with torch.set_grad_enabled(grad), last_layer_kv_only(lm):
            attention_mask = inputs["attention_mask"]
            position_ids = attention_mask.cumsum(-1) - 1
            embeds = self.model.model.embed_prefix(
                inputs["input_ids"], inputs["pixel_values"], inputs["pixel_attention_mask"]
            )
            token_type_ids = torch.zeros_like(embeds)[:, :, 0]
            cache = self.model.model.vlm(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                token_type_ids=token_type_ids,
                use_cache=True,
                cache=recording_cache() if ckpt else None,
            ).cache
        if ckpt:
            cache = frozen_view(cache)
        return cache, cache.get_seq_length()

    def velocity(
        self,
        inputs: dict[str, torch.Tensor],
        cache: Any,
        prefix_len: int,
        x: torch.Tensor,
        t: torch.Tensor,
    ) -> torch.Tensor:
        """Expert forward against the cached prefix: ``v(x, t)`` as float32.

        The cache is cropped back to the prefix afterwards, as transformers
        does, so the next step does not attend to this step's tokens.
        """
        out = self.model(
            state=inputs["state"],
            noise=x,
            timestep=t,
            pixel_attention_mask=inputs["pixel_attention_mask"],
            attention_mask=inputs["attention_mask"],
            cache=cache,
        )
        cache.crop(prefix_len - cache.get_seq_length())
        return out.logits.to(torch.float32)

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
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
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
        coeffs = StepCoefficients.build(steps, level if mode == "sde" else 0.0)
        bsz, device = len(batch), batch.device
        shape = (bsz, self.chunk_size, self.max_action_dim)
        if noise is None:
            noise = _randn(shape, generator, device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        elif noise.dtype != torch.float32:
            # DESIGN §6: x_1 is float32 whatever the model dtype; bf16 noise has
            # already lost its digits, so casting it up here would hide that
            raise ValueError(
                f"noise must be float32 (got {noise.dtype}); draw it with dtype=torch.float32"
            )
        x = noise.to(device=device, dtype=torch.float32)
        fast = self.fast_sampler()
        if fast is not None:
            # same maths and RNG order, static KV cache, one CUDA graph per chunk
            return fast.sample(batch, mode, generator, x, level, steps)

        stochastic = mode == "sde" and level > 0.0
        one_step = stochastic and self.config.sde_scheme == "one"
        chosen = _randint(steps, bsz, generator, device) if one_step else None
        region = self.scored_region(device)
        noise_region = (
            region if self.config.sde_noise_region == "scored" else torch.ones_like(region)
        )

        inputs = self.model_inputs(batch)
        cache, prefix_len = self.encode_prefix(inputs)
        chain = [x]
        logp = torch.zeros(bsz, dtype=torch.float64, device=device)
        for i in range(steps):
            # float64 t: the time embedding is float64 (precision.py); float32
            # would round the grid point before it is embedded
            t = torch.full((bsz,), coeffs.t[i], dtype=torch.float64, device=device)
            v = self.velocity(inputs, cache, prefix_len, x, t)
            x_ode = euler_step(x, v, coeffs.dt)
            if mode == "ode":
                x = x_ode
            else:
                idx = torch.full((bsz,), i, dtype=torch.long, device=device)
                mean = sde_mean(
                    x, v, coeffs.dt, coeffs.column("one_minus_t", idx), coeffs.column("drift", idx)
                )
                std = coeffs.column("std", idx)
                eps = _randn(shape, generator, device)
                x_sde = torch.where(noise_region, mean + std * eps, x_ode)
                step_logp = (
                    gaussian_log_prob(x_sde, mean, std, region)
                    if stochastic
                    else torch.zeros_like(logp)
                )
                x, logp = take_step(i, x_ode, x_sde, step_logp, logp, chosen)
            chain.append(x)
        return SampleOutput(
            actions=x,
            chain=torch.stack(chain, dim=1),
            log_prob=logp.to(torch.float32),
            stochastic_step=chosen,
            mode=mode,
            noise_level=level if mode == "sde" else 0.0,
        )

    def fast_sampler(self) -> FastSampler | None:
        """The static-cache CUDA-graph sampler (:mod:`.fast_sampler`) if
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

    # ---- re-scoring --------------------------------------------------------------

    @with_attention_backends
    def log_prob(
        self,
        batch: PolicyBatch,
        chain: torch.Tensor,
        stochastic_step: torch.Tensor | None = None,
        *,
        noise_level: float | None = None,
    ) -> torch.Tensor:
        """Log-density ``[B]`` (float32) of ``chain`` under the current weights.

        ``stochastic_step=None``: every transition is Gaussian, the log-prob
        sums over all of them (one expert pass over all steps' rows). A ``[B]`` tensor:
        only that transition per sample is scored (one expert pass in all).
        Differentiable through the expert and -- if trainable -- the VLM; the
        prefix is encoded once. Sums over :meth:`scored_region` only.
        """
        level = self.config.noise_level if noise_level is None else float(noise_level)
        if level <= 0.0:
            raise ValueError("log_prob needs noise_level > 0: the ODE chain has no density")
        chain = chain.to(device=self.device, dtype=torch.float32)
        steps = chain.shape[1] - 1
        coeffs = StepCoefficients.build(steps, level)
        bsz, device = chain.shape[0], chain.device
        region = self.scored_region(device)
        inputs = self.model_inputs(batch)
        cache, prefix_len = self.encode_prefix(inputs)

        if stochastic_step is not None:
            idx = stochastic_step.to(device=device, dtype=torch.long)
            rows = torch.arange(bsz, device=device)
            x, x_next = chain[rows, idx], chain[rows, idx + 1]
            t = coeffs.column("t", idx, torch.float64)[:, 0, 0]
            v = self.velocity(inputs, cache, prefix_len, x, t)
            mean = sde_mean(
                x, v, coeffs.dt, coeffs.column("one_minus_t", idx), coeffs.column("drift", idx)
            )
            return gaussian_log_prob(x_next, mean, coeffs.column("std", idx), region).to(
                torch.float32
            )

        # every transition at once: the chain is given, so the steps do not
        # depend on each other -- one expert pass over B x steps rows, each
        # attending to its sample's prefix, instead of `steps` small passes
        # (same maths; bigger matmuls and 1/steps of the kernel launches)
        idx = torch.arange(steps, device=device).repeat(bsz)  # row b*steps + i -> step i
        t = torch.tensor(coeffs.t, dtype=torch.float64, device=device).repeat(bsz)
        rows = {k: inputs[k].repeat_interleave(steps, dim=0) for k in _PER_SAMPLE_INPUTS}
        x = chain[:, :-1].reshape(bsz * steps, *chain.shape[2:])
        v = self.velocity(rows, frozen_view(cache, repeats=steps), prefix_len, x, t)
        mean = sde_mean(
            x, v, coeffs.dt, coeffs.column("one_minus_t", idx), coeffs.column("drift", idx)
        )
        x_next = chain[:, 1:].reshape(bsz * steps, *chain.shape[2:])
        logp = gaussian_log_prob(x_next, mean, coeffs.column("std", idx), region)
        logp = logp.view(bsz, steps).sum(dim=1)
        return logp.to(torch.float32)

    # ---- behaviour cloning ---------------------------------------------------------

    def sample_time(self, bsz: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training time ``Beta(alpha, beta) * scale + offset`` (openpi: Beta(1.5, 1)*0.999+0.001).

        For ``beta == 1`` the Beta draw is ``u**(1/alpha)`` of a uniform, which
        lets a generator make BC reproducible.
        """
        cfg = self.arch.pi0_config
        if cfg.time_sampling_beta_beta == 1.0:
            u = torch.rand(bsz, generator=generator, device=self.device, dtype=torch.float32)
            beta = u ** (1.0 / cfg.time_sampling_beta_alpha)
        else:
            dist = torch.distributions.Beta(
                torch.tensor(cfg.time_sampling_beta_alpha),
                torch.tensor(cfg.time_sampling_beta_beta),
            )
            beta = dist.sample((bsz,)).to(self.device, torch.float32)
        return beta * cfg.time_sampling_scale + cfg.time_sampling_offset

    @with_attention_backends
    def bc_loss(
        self,
        batch: PolicyBatch,
        actions: torch.Tensor,
        action_is_pad: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Flow-matching loss on demonstration chunks (scalar).

        ``actions`` are raw ``[B, chunk, action_dim]``; they are normalised and
        padded like the model's outputs. Loss = mean squared error between the
        predicted velocity and ``noise - actions`` at ``x_t = t*noise +
        (1-t)*actions``, averaged over the real action dims and the chunk steps
        that are not padding (``action_is_pad`` True: past the episode end).
        Padded steps still enter the expert as inputs (whatever the dataset
        pads with), as in lerobot; only their errors are excluded.
        """
        bsz = len(batch)
        if actions.shape[:2] != (bsz, self.chunk_size):
            raise ValueError(
                f"actions must be [B={bsz}, chunk={self.chunk_size}, action_dim], "
                f"got {tuple(actions.shape)}"
            )
        target_actions = self.normalize_actions(actions)
        noise = torch.randn(
            target_actions.shape, generator=generator, device=self.device, dtype=torch.float32
        )
        t = self.sample_time(bsz, generator)
        te = t[:, None, None]
        x_t = te * noise + (1 - te) * target_actions
        inputs = self.model_inputs(batch)
        cache, prefix_len = self.encode_prefix(inputs)
        v = self.velocity(inputs, cache, prefix_len, x_t, t)
        err = (v - (noise - target_actions)) ** 2
        weight = torch.zeros_like(err)
        weight[..., : self.action_dim] = 1.0
        if action_is_pad is not None:
            weight = weight * (~action_is_pad.to(self.device, torch.bool))[..., None]
        return (err * weight).sum() / weight.sum().clamp_min(1.0)


#: The model inputs ``velocity`` reads per row (the prefix comes from the cache).
_PER_SAMPLE_INPUTS = ("state", "attention_mask", "pixel_attention_mask")


def _per_sample(generator: Any, bsz: int) -> list[torch.Generator] | None:
    if generator is None or isinstance(generator, torch.Generator):
        return None
    gens = list(generator)
    if len(gens) != bsz:
        raise ValueError(f"got {len(gens)} generators for a batch of {bsz}")
    return gens


def _randn(shape: tuple[int, ...], generator: Any, device: torch.device) -> torch.Tensor:
    """Standard normal float32 noise, from one generator or one per sample."""
    gens = _per_sample(generator, shape[0])
    if gens is None:
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    return torch.stack(
        [torch.randn(shape[1:], generator=g, device=device, dtype=torch.float32) for g in gens]
    )


def _randint(high: int, bsz: int, generator: Any, device: torch.device) -> torch.Tensor:
    gens = _per_sample(generator, bsz)
    if gens is None:
        return torch.randint(0, high, (bsz,), generator=generator, device=device)
    return torch.cat([torch.randint(0, high, (1,), generator=g, device=device) for g in gens])


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(arch: Architecture, config: PolicyConfig) -> PI0ForConditionalGeneration:
    """Random-init transformers PI0, created directly on the target device (a
    3.5B model is slow to initialise on CPU and copy)."""
    with torch.device(resolve_device(config.device)):
        model = PI0ForConditionalGeneration(arch.pi0_config)
    return model.eval()


def drop_unused_expert_embedding(model: PI0ForConditionalGeneration) -> None:
    """The expert only ever receives ``inputs_embeds``; transformers still
    allocates a vocab x width table for it (263M parameters at full size,
    DESIGN §5). Removing it is safe: ``GemmaModel`` touches ``embed_tokens``
    only when given ``input_ids``."""
    if getattr(model.model.dit, "embed_tokens", None) is not None:
        model.model.dit.embed_tokens = None
