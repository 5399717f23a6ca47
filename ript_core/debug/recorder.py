"""Record every stage of one observation's trip through the PI0 pipeline.

The recorder drives the real pipeline -- the backend's observation adapter,
``policy.preprocess``, ``policy.sample`` and ``policy.postprocess``, the
backend's action adapter -- and captures the model's internals with forward
hooks on the transformers modules, so what is recorded is what runs, not a
re-implementation of it. Stage names (see docs/debugging.md):

==========================================  ==============================================
``raw/...``                                 the env observation's arrays (images, state)
``adapted/images/<slot>``, ``adapted/state``  after the observation adapter
``input/images`` ... ``input/state``        the preprocessed batch (resized uint8, masks,
                                            token ids, normalised padded state)
``input/image/<slot>``,                     the same images and masks per camera slot
``input/image_mask/<slot>``                 (openpi's layout, for mapping its dumps)
``input/pixel_values``                      model pixels in [-1, 1] (model dtype)
``vision/embeddings``, ``vision/layer_NN``,  SigLIP patch embeddings, every encoder layer,
``vision/post_norm``, ``vision/projector``   the final norm, the projected image tokens
``prefix/embeds``                           image + scaled text embeddings into the VLM
``vlm/layer_NN``, ``vlm/norm``              PaliGemma's Gemma layers over the prefix
``denoise/noise``                           the initial x_1 (float32)
``denoise/step_KK/t``, ``.../x_t``          time and input of denoising step KK
``expert/step_KK/suffix_embeds``            state + action-time tokens into the expert
``expert/step_KK/layer_NN``, ``.../norm``   the action expert's layers at step KK
``denoise/step_KK/velocity``                the predicted velocity at step KK
``actions/normalized``                      x_0, the model's output
``actions/unnormalized``                    after un-normalisation and slicing
``actions/delta_state``, ``actions/absolute``  only with a delta transform: the
                                            un-normalised state added, and the result
``actions/env``                             after the backend's action adapter
==========================================  ==============================================

Model-internal stages keep the batch axis (1). Layer stages can be turned off
(``layers=False``) when only the inputs and outputs matter.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import torch

from ript_core.debug.recording import Recording
from ript_core.envs.interfaces import ActionAdapter, ObservationAdapter, PolicyInput
from ript_core.policy import PI0Policy
from ript_core.policy.fast.kv_only_layer import full_last_layer
from ript_core.policy.precision import require_fp32_highest, tf32_settings


def _first_tensor(output: Any) -> torch.Tensor:
    if torch.is_tensor(output):
        return output
    if isinstance(output, tuple | list) and output and torch.is_tensor(output[0]):
        return output[0]
    for attr in ("last_hidden_state", "pooler_output"):
        value = getattr(output, attr, None)
        if torch.is_tensor(value):
            return value
    raise TypeError(f"cannot find a tensor in a module output of type {type(output).__name__}")


def versions() -> dict[str, str]:
    import transformers

    import ript_core

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
    }
    out["ript_core"] = getattr(ript_core, "__version__", _dist_version("ript-core"))
    return out


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _flatten_obs(obs: Mapping[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Numeric arrays -> stages; strings and scalars -> metadata."""
    arrays: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for key, value in obs.items():
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            a, o = _flatten_obs(value, name)
            arrays.update(a)
            other.update(o)
            continue
        arr = np.asarray(value) if not torch.is_tensor(value) else value
        if isinstance(arr, np.ndarray) and (arr.dtype.kind in "USO" or arr.ndim == 0):
            other[name] = value.item() if hasattr(value, "item") else value
            if isinstance(other[name], bytes | np.str_):
                other[name] = str(other[name])
        else:
            arrays[name] = arr
    return arrays, other


class _Hooks:
    """Forward hooks that put module outputs into a recording.

    Expert stages are per denoising step: the step counter advances each time
    the action-time embedding runs (once per expert forward).
    """

    def __init__(self, rec: Recording, policy: PI0Policy, layers: bool) -> None:
        self.rec = rec
        self.step = -1
        self.handles: list[Any] = []
        model = policy.model
        vlm = model.model.vlm
        if layers:
            vis = vlm.vision_tower
            self._out(vis.embeddings, lambda: "vision/embeddings")
            for i, layer in enumerate(vis.encoder.layers):
                self._out(layer, lambda i=i: f"vision/layer_{i:02d}")
            self._out(vis.post_layernorm, lambda: "vision/post_norm")
            self._out(vlm.multi_modal_projector, lambda: "vision/projector")
        lm = vlm.language_model
        self.handles.append(lm.register_forward_pre_hook(self._prefix, with_kwargs=True))
        if layers:
            for i, layer in enumerate(lm.layers):
                self._out(layer, lambda i=i: f"vlm/layer_{i:02d}")
            self._out(lm.norm, lambda: "vlm/norm")
        self.handles.append(
            model.embed_action_time.register_forward_pre_hook(self._step_inputs, with_kwargs=True)
        )
        self._out(model.embed_action_time, lambda: f"expert/step_{self.step:02d}/suffix_embeds")
        if layers:
            dit = model.model.dit
            for i, layer in enumerate(dit.layers):
                self._out(layer, lambda i=i: f"expert/step_{self.step:02d}/layer_{i:02d}")
            self._out(dit.norm, lambda: f"expert/step_{self.step:02d}/norm")
        self._out(model.action_out_proj, lambda: f"denoise/step_{self.step:02d}/velocity")

    def _out(self, module: torch.nn.Module, name: Callable[[], str]) -> None:
        def hook(_module, _inputs, output):
            self.rec.add(name(), _first_tensor(output))

        self.handles.append(module.register_forward_hook(hook))

    def _prefix(self, _module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None and "prefix/embeds" not in self.rec:
            self.rec.add("prefix/embeds", embeds)

    def _step_inputs(self, _module, args, kwargs):
        names = ("state", "noise", "timestep")
        values = dict(zip(names, args, strict=False)) | {k: kwargs[k] for k in names if k in kwargs}
        self.step += 1
        self.rec.add(f"denoise/step_{self.step:02d}/t", values["timestep"])
        self.rec.add(f"denoise/step_{self.step:02d}/x_t", values["noise"])

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def make_noise(policy: PI0Policy, seed: int) -> torch.Tensor:
    """``[1, chunk, max_action_dim]`` float32 N(0, 1) drawn on the CPU from
    ``seed``: the same numbers on every device, so a CPU and a GPU recording
    (or another implementation given this array) start from the same x_1."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, policy.chunk_size, policy.max_action_dim, generator=gen)


@torch.no_grad()
def record_inference(
    policy: PI0Policy,
    observation: Mapping[str, Any] | PolicyInput,
    *,
    obs_adapter: ObservationAdapter | None = None,
    action_adapter: ActionAdapter | None = None,
    noise: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
    mode: Literal["ode", "sde"] = "ode",
    layers: bool = True,
    meta: Mapping[str, Any] | None = None,
    allow_tf32: bool = False,
) -> Recording:
    """Run one observation through the pipeline and record every stage.

    ``observation`` is a raw env observation (then ``obs_adapter`` translates
    it) or an already adapted :class:`PolicyInput`. ``noise`` (``[1, chunk,
    max_action_dim]``) defaults to :func:`make_noise` of ``seed``; the SDE's
    per-step noise, if ``mode="sde"``, comes from a generator seeded with
    ``seed + 1``. A float32 policy is a parity run: it refuses to record with
    TF32 matmuls on unless ``allow_tf32`` (the settings are in the metadata).
    """
    if mode not in ("ode", "sde"):
        raise ValueError(f"mode must be 'ode' or 'sde', got {mode!r}")
    if policy.config.compile:
        # forward hooks inside torch.compile'd stacks are not reliable, and a
        # compiled run is not the eager numerics a parity hunt compares
        raise ValueError(
            "record_inference needs an eager policy: build or load it with compile=False "
            "(ript record does)"
        )
    shape = (1, policy.chunk_size, policy.max_action_dim)
    if noise is None:
        noise = make_noise(policy, seed)
    noise = torch.as_tensor(noise)
    if tuple(noise.shape) != shape:
        raise ValueError(
            f"noise must have shape {shape} (batch 1, the policy's chunk x max_action_dim), "
            f"got {tuple(noise.shape)}"
        )
    if noise.dtype != torch.float32:
        # noise is float32 whatever the model dtype (docs/policy.md)
        raise ValueError(f"noise must be float32, got {noise.dtype}")
    if policy.config.dtype == "float32" and not allow_tf32:
        require_fp32_highest("recording a float32 policy")

    rec = Recording(
        meta={
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "versions": versions(),
            "dtype": policy.config.dtype,
            "device": str(policy.device),
            "seed": seed,
            "mode": mode,
            "num_steps": policy.num_steps,
            "preset": policy.config.preset,
            "attn_implementation": policy.config.attn_implementation,
            **tf32_settings(),
            "norm_stats_source": policy.stats.source,
            "pipeline": policy.pipeline.to_dict(),
            **dict(meta or {}),
        }
    )

    if isinstance(observation, PolicyInput):
        inp = observation
    else:
        if obs_adapter is None:
            raise ValueError(
                "a raw env observation needs the backend's observation adapter "
                "(obs_adapter=...), or pass a PolicyInput"
            )
        arrays, other = _flatten_obs(observation, "raw")
        for name, value in arrays.items():
            rec.add(name, value)
        rec.meta["raw_strings"] = other
        inp = obs_adapter(observation)
    for slot, img in inp.images.items():
        rec.add(f"adapted/images/{slot}", np.asarray(img))
    rec.add("adapted/state", np.asarray(inp.state))
    rec.meta["prompt"] = inp.prompt

    batch = policy.preprocess([inp])
    rec.add("input/images", batch.images)
    rec.add("input/image_masks", batch.image_masks)
    for c, slot in enumerate(policy.arch.cameras):
        rec.add(f"input/image/{slot}", batch.images[:, c])
        rec.add(f"input/image_mask/{slot}", batch.image_masks[:, c])
    rec.add("input/token_ids", batch.tokens)
    rec.add("input/token_mask", batch.token_masks)
    rec.add("input/state", batch.state)
    rec.meta["token_ids"] = batch.tokens[0][batch.token_masks[0]].tolist()
    rec.meta["cameras"] = list(policy.arch.cameras)
    rec.add("input/pixel_values", policy.model_inputs(batch)["pixel_values"])
    rec.add("denoise/noise", noise)

    hooks = _Hooks(rec, policy, layers)
    try:
        generator = None
        if mode == "sde":
            generator = torch.Generator(device=policy.device).manual_seed(seed + 1)
        # every stage real: the prefix's last layer and final norm, which
        # sampling otherwise skips as dead work (kv_only_layer.py)
        with full_last_layer():
            out = policy.sample(batch, mode, generator=generator, noise=noise.to(policy.device))
    finally:
        hooks.remove()
    rec.add("actions/normalized", out.actions)
    if mode == "sde":
        rec.add("actions/log_prob", out.log_prob)
    real = out.actions[..., : policy.action_dim]
    rec.add("actions/unnormalized", policy.stats.unnormalize(real, "actions"))
    final = policy.postprocess(out.actions, batch)
    mask = policy.pipeline.delta_action_mask
    if mask is not None:
        state = policy.stats.unnormalize(
            batch.state[..., : policy.state_dim], "state", dtype=torch.float64
        )
        rec.add("actions/delta_state", state[..., : len(mask)])
        rec.add("actions/absolute", final)
    if action_adapter is not None:
        rec.add("actions/env", np.asarray(action_adapter(final[0])))
    return rec
