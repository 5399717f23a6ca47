"""Trainable-parameter strategies: ``full``, ``expert``, ``lora``.

A full-size PI0 has 3.5B parameters; full fine-tuning with AdamW needs
~56 GB before any activation, more than a 24–48 GB card. Two cheaper
strategies keep most weights frozen:

- ``expert``: the action expert (Gemma-300M) and the action/state/time
  projections train; the VLM is frozen. Since no VLM parameter needs a
  gradient, :meth:`PI0Policy.encode_prefix` runs the prefix under
  ``no_grad``: the update back-propagates through the expert only.
- ``lora``: ``peft`` LoRA adapters on the attention/MLP linears of the
  Gemma stacks named in ``policy.lora.targets``; the base weights are
  frozen, the projections train in full (``policy.lora.train_projections``).
  With ``targets=["expert"]`` the VLM has no adapter and its prefix is
  computed without grad as well.

Frozen tensors are never touched by the optimizer (it only receives
:func:`trainable_parameters`), so they stay bit-identical through training.
Checkpoints of these policies hold only what trains
(:mod:`ript_core.policy.io.strategy_files`); :func:`merge_lora` folds
adapters into the base weights for ``ript export --merge``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ript_core.policy.config import LoraSettings

if TYPE_CHECKING:
    from ript_core.policy.policy import PI0Policy

ADAPTER_NAME = "default"
LORA_INSTALL = 'pip install "ript-core[lora]"  (or: pip install peft)'

# module-path prefixes of the two Gemma stacks inside PI0ForConditionalGeneration
_STACKS = {"vlm": r"model\.vlm\.language_model", "expert": r"model\.dit"}


class StrategyError(ValueError):
    """A strategy cannot be applied, saved or loaded as asked."""


def peft_module() -> Any:
    """The ``peft`` package, or a :class:`StrategyError` that says how to install it."""
    try:
        import peft
    except ModuleNotFoundError as exc:
        raise StrategyError(
            f"policy.strategy='lora' needs the peft package, which is not installed: "
            f"{LORA_INSTALL}; or choose policy.strategy 'expert' or 'full'"
        ) from exc
    return peft


def lora_target_regex(settings: LoraSettings) -> str:
    """peft ``target_modules`` regex (full match on module names): the chosen
    linears of the decoder layers of the chosen stacks -- never SigLIP."""
    stacks = "|".join(_STACKS[t] for t in settings.targets)
    mods = "|".join(settings.modules)
    return rf"({stacks})\.layers\.\d+\.(self_attn|mlp)\.({mods})"


def is_projection(name: str) -> bool:
    """The action/state/time projections around the expert (everything outside
    the two stacks): trained by every strategy."""
    return not name.startswith(("model.vlm.", "model.dit."))


def has_lora(model: nn.Module) -> bool:
    return any(".lora_" in n for n, _ in model.named_parameters())


def _inject_lora(model: nn.Module, settings: LoraSettings) -> None:
    peft = peft_module()
    from peft.tuners.lora import LoraModel

    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=lora_target_regex(settings),
        bias="none",
    )
    # LoraModel injects the adapters in place (the module tree and every
    # non-adapter parameter name stay, the adapted linears become
    # ``<name>.base_layer`` + ``<name>.lora_A/B.default``); lora_B starts at
    # zero, so the fresh adapter changes no output bit.
    LoraModel(model, config, ADAPTER_NAME)


def apply_strategy(policy: PI0Policy) -> None:
    """Set ``requires_grad`` (and inject LoRA adapters) per ``policy.config``."""
    cfg, model = policy.config, policy.model
    vlm = model.model.vlm
    if cfg.strategy != "lora" and has_lora(model):
        raise StrategyError(
            f"policy.strategy={cfg.strategy!r} but the model carries LoRA adapters: merge them "
            "first (ript export --merge CKPT OUT, or strategies.merge_lora)"
        )
    if cfg.strategy == "full":
        # the historical flags: VLM per train_vlm, its vision side per train_vision
        model.requires_grad_(True)
        vlm.requires_grad_(cfg.train_vlm)
        if not (cfg.train_vlm and cfg.train_vision):
            vlm.vision_tower.requires_grad_(False)
            vlm.multi_modal_projector.requires_grad_(False)
        return
    if cfg.strategy == "expert":
        model.requires_grad_(True)
        vlm.requires_grad_(False)
        return
    if not has_lora(model):
        _inject_lora(model, cfg.lora)
    projections = cfg.lora.train_projections
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or (projections and is_projection(name)))


def trainable_parameters(policy: PI0Policy) -> list[nn.Parameter]:
    """What the optimizer receives, in module order (stable across save/load)."""
    return [p for p in policy.model.parameters() if p.requires_grad]


def named_trainable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' PI0 keys, without adapters: a
    LoRA-wrapped linear's ``<name>.base_layer.weight`` is ``<name>.weight``.
    With adapters these are the *frozen base* values, not the merged ones."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


# ---- merge ---------------------------------------------------------------------------


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base linear and remove the wrappers, in
    place: the result is a plain ``PI0ForConditionalGeneration`` whose
    state-dict keys are transformers' own."""
    from peft.tuners.lora import LoraLayer

    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, module in wrapped:
        module.merge(adapter_names=[ADAPTER_NAME])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model
