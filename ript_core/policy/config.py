"""The policy's config: which architecture, how to sample, what is trained.

One attrs class so that a YAML ``policy:`` section structures into it with
``ript_core.config.structure(PolicyConfig, d)`` and every knob that changes
numbers (noise level, scored window, dtype) is recorded with a run.

Architecture fields left at ``None`` take the preset's value (see
:mod:`ript_core.policy.io.presets`); setting one overrides the preset, so a
config file only names what differs from ``pi0`` / ``pi0-tiny``.
"""

from __future__ import annotations

from typing import Literal

import attrs

SdeScheme = Literal["all", "one"]
NoiseRegion = Literal["scored", "all"]
DType = Literal["float32", "bfloat16"]
Strategy = Literal["full", "expert", "lora"]
LoraTarget = Literal["vlm", "expert"]
STRATEGIES = ("full", "expert", "lora")
#: Every attention and MLP linear of a Gemma stack (PaliGemma's language model
#: and the action expert): openpi's pi0 LoRA recipe adapts exactly these.
GEMMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@attrs.define
class LoraSettings:
    """LoRA adapters of the ``lora`` strategy (applied through ``peft``).

    Defaults and why: ``rank=32`` / ``alpha=32`` is RIPT-VLA's recipe for
    OpenVLA-OFT, which reached 97 % on LIBERO from 1 demo; alpha
    equal to the rank keeps the adapter's scale (alpha/rank) at 1, so the
    learning rate means the same at any rank. ``dropout=0``: RL already
    injects noise through the SDE sampler, and dropout would make the
    recomputed log-prob differ from the one recorded at sampling time (the
    PPO ratio would not be 1 for unchanged weights). ``targets`` both Gemma
    stacks and ``modules`` every attention/MLP linear, as openpi's pi0 LoRA;
    the SigLIP vision tower is never adapted (it stays frozen, as in openpi).
    A stack not named in ``targets`` is frozen whole; the action/state/time
    projections train in full unless ``train_projections=False``.
    """

    rank: int = 32  # the adapters' rank
    alpha: float = 32.0  # scale alpha/rank; alpha = rank keeps the scale at 1
    dropout: float = 0.0  # 0: the recomputed log-prob must equal the sampled one
    targets: list[LoraTarget] = attrs.Factory(lambda: ["vlm", "expert"])  # adapted stacks
    modules: list[str] = attrs.Factory(lambda: list(GEMMA_LINEARS))  # adapted linears
    # openpi's LoRA configs freeze only the Gemma base weights: the small
    # action/state/time projections keep training in full. False: adapters only.
    train_projections: bool = True

    def __attrs_post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"policy.lora.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"policy.lora.dropout must be in [0, 1), got {self.dropout}")
        bad = [t for t in self.targets if t not in ("vlm", "expert")]
        if bad or not self.targets:
            raise ValueError(
                f"policy.lora.targets must be a non-empty subset of ['vlm', 'expert'], got "
                f"{self.targets}"
            )
        unknown = [m for m in self.modules if m not in GEMMA_LINEARS]
        if unknown or not self.modules:
            raise ValueError(
                f"policy.lora.modules {unknown or self.modules} not adaptable: choose among "
                f"{list(GEMMA_LINEARS)}"
            )


@attrs.define
class PolicyConfig:
    """Everything needed to build and run a :class:`~ript_core.policy.PI0Policy`.

    Sampling (docs/policy.md, "Sampling and log-probs"): ``sde_scheme="all"`` makes every denoising step a
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

    preset: str = "pi0-tiny"  # architecture: pi0 | pi0-tiny (ript_core.policy.io.presets)
    # --- architecture overrides (None: the preset's value) -------------------
    chunk_size: int | None = None  # actions per chunk
    max_action_dim: int | None = None  # padded action width
    max_state_dim: int | None = None  # padded state width
    num_steps: int | None = None  # denoising steps per chunk
    cameras: list[str] | None = None  # camera slots, e.g. [base_0_rgb, left_wrist_0_rgb]
    max_token_len: int | None = None  # prompt tokens
    image_size: int | None = None  # images are resized to this square size
    # Real (un-padded) dims of the env/checkpoint. None: taken from the
    # normalisation stats, else the padded max dims.
    action_dim: int | None = None
    state_dim: int | None = None  # as action_dim, for the proprio state
    # --- tokenizer -------------------------------------------------------------
    # A PaliGemma sentencepiece model or a tokenizers JSON file / directory.
    tokenizer_path: str | None = None
    # --- SDE / RL --------------------------------------------------------------
    noise_level: float = 0.5  # the flow-SDE's a in sigma_t = a*sqrt(t/(1-t)); must be > 0 for RIPT
    sde_scheme: SdeScheme = "all"  # all: every denoising step is stochastic; one: one random step
    sde_noise_region: NoiseRegion = "scored"  # scored: noise only where the log-prob is scored
    # Log-probs are summed over the first logp_horizon actions (the replan
    # window) and the first logp_action_dims dims (the env's). None: the whole
    # chunk / the real action_dim.
    logp_horizon: int | None = None
    logp_action_dims: int | None = None  # scored action dims (set to the env's action dims)
    # --- training --------------------------------------------------------------
    # What trains (ript_core.policy.strategies): "full" -- the VLM (per
    # train_vlm / train_vision) and the expert; "expert" -- the action expert
    # and projections, the VLM frozen and its prefix run without grad;
    # "lora" -- peft adapters (policy.lora) on frozen base weights.
    strategy: Strategy = "full"
    lora: LoraSettings = attrs.Factory(LoraSettings)
    train_vlm: bool = True  # strategy full: the PaliGemma language model trains
    train_vision: bool = True  # strategy full: the SigLIP vision tower trains
    # --- numerics / devices ----------------------------------------------------
    dtype: DType = "float32"  # compute dtype; bfloat16 keeps fp32 master weights
    device: str = "cpu"  # cpu | cuda | cuda:N
    # On CUDA, the fast sampler runs every transformer layer through
    # torch.compile (regional, inductor): faster chunks after minutes of
    # compilation once per process (docs/policy.md). Sampling only: log_prob
    # and BC stay eager, so the sampler's log-probs round differently from the
    # update's -- update.old_log_prob "auto" (the default) recomputes them.
    compile: bool = False
    # On CUDA, sample through ript_core.policy.fast.sampler (static prefix KV
    # cache, one CUDA graph per chunk; same numbers as the eager loop). False:
    # the eager loop everywhere.
    fast_sampler: bool = True
    # Gemma's RMSNorm through torch's fused rms_norm (ript_core.policy.fast.norms):
    # one kernel instead of ~10 per call on CUDA, same maths. False: the
    # norms as transformers writes them.
    fused_norms: bool = True
    # Drop a camera slot that is missing for every sample of a batch: its
    # tokens are masked anyway (mathematically inert), so this only saves a
    # camera's worth of SigLIP and prefix compute (a third for LIBERO pi0).
    drop_missing_cameras: bool = True
    attn_implementation: str = "sdpa"  # transformers' attention: sdpa | eager

    def __attrs_post_init__(self) -> None:
        if self.noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {self.noise_level}")
        if self.sde_scheme not in ("all", "one"):
            raise ValueError(f"sde_scheme must be 'all' or 'one', got {self.sde_scheme!r}")
        if self.sde_noise_region not in ("scored", "all"):
            raise ValueError(
                f"sde_noise_region must be 'scored' or 'all', got {self.sde_noise_region!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"policy.strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}"
            )
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        for name in ("logp_horizon", "logp_action_dims", "chunk_size", "num_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
