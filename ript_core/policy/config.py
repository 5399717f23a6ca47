"""The policy's config: which architecture, how to sample, what is trained.

One attrs class so that a YAML ``policy:`` section structures into it with
``ript_core.config.structure(PolicyConfig, d)`` and every knob that changes
numbers (noise level, scored window, dtype) is recorded with a run.

Architecture fields left at ``None`` take the preset's value (see
:mod:`ript_core.policy.presets`); setting one overrides the preset, so a
config file only names what differs from ``pi0`` / ``pi0-tiny``.
"""

from __future__ import annotations

from typing import Literal

import attrs

SdeScheme = Literal["all", "one"]
NoiseRegion = Literal["scored", "all"]
DType = Literal["float32", "bfloat16"]


@attrs.define
class PolicyConfig:
    """Everything needed to build and run a :class:`~ript_core.policy.PI0Policy`.

    Sampling (DESIGN §3): ``sde_scheme="all"`` makes every denoising step a
    Gaussian transition and the log-prob sums over the chain (exact, one
    expert pass per step at update time); ``"one"`` makes one uniformly drawn
    step stochastic and the rest Euler (log-prob of that step only, one expert
    pass at update time). ``noise_level`` is the ``a`` of the flow-SDE
    ``sigma_t = a*sqrt(t/(1-t))``; 0 gives the ODE sampler bit for bit.

    ``sde_noise_region="scored"`` injects noise only into the entries whose
    log-prob is scored (the first ``logp_horizon`` actions x the first
    ``logp_action_dims`` dims); every other entry follows the deterministic
    Euler step. The recorded log-prob is then the exact density of everything
    random in the chain, not an approximation that ignores noise in actions
    the env never executes. ``"all"`` injects everywhere (RLinf-style).
    """

    preset: str = "pi0-tiny"
    # --- architecture overrides (None: the preset's value) -------------------
    chunk_size: int | None = None
    max_action_dim: int | None = None
    max_state_dim: int | None = None
    num_steps: int | None = None
    cameras: list[str] | None = None
    max_token_len: int | None = None
    image_size: int | None = None
    # Real (un-padded) dims of the env/checkpoint. None: taken from the
    # normalisation stats, else the padded max dims.
    action_dim: int | None = None
    state_dim: int | None = None
    # --- tokenizer -------------------------------------------------------------
    # A PaliGemma sentencepiece model or a tokenizers JSON file / directory.
    tokenizer_path: str | None = None
    # --- SDE / RL --------------------------------------------------------------
    noise_level: float = 0.5
    sde_scheme: SdeScheme = "all"
    sde_noise_region: NoiseRegion = "scored"
    # Log-probs are summed over the first logp_horizon actions (the replan
    # window) and the first logp_action_dims dims (the env's). None: the whole
    # chunk / the real action_dim.
    logp_horizon: int | None = None
    logp_action_dims: int | None = None
    # --- training --------------------------------------------------------------
    train_vlm: bool = True
    train_vision: bool = True
    # --- numerics / devices ----------------------------------------------------
    dtype: DType = "float32"
    device: str = "cpu"
    compile: bool = False
    # On CUDA, sample through ript_core.policy.fast_sampler (static prefix KV
    # cache, one CUDA graph per chunk; same numbers as the eager loop). False:
    # the eager loop everywhere.
    fast_sampler: bool = True
    # Drop a camera slot that is missing for every sample of a batch: its
    # tokens are masked anyway (mathematically inert), so this only saves a
    # camera's worth of SigLIP and prefix compute (a third for LIBERO pi0).
    drop_missing_cameras: bool = True
    attn_implementation: str = "sdpa"

    def __attrs_post_init__(self) -> None:
        if self.noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {self.noise_level}")
        if self.sde_scheme not in ("all", "one"):
            raise ValueError(f"sde_scheme must be 'all' or 'one', got {self.sde_scheme!r}")
        if self.sde_noise_region not in ("scored", "all"):
            raise ValueError(
                f"sde_noise_region must be 'scored' or 'all', got {self.sde_noise_region!r}"
            )
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        for name in ("logp_horizon", "logp_action_dims", "chunk_size", "num_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
