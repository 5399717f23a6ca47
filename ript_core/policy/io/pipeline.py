"""A checkpoint's input/output transforms, as data that travels with its weights.

The same PI0 weights give actions centimetres apart when they are run with
another resampler, prompt format, camera layout or action post-processing
(parity checklist A1-A8). So these choices are not constants in a plugin:
they are a :class:`Pipeline`, saved beside the weights as ``pipeline.json``
and loaded with them, next to the normalisation stats (``stats.json``, which
carry their own mode, eps and convention). What the model architecture fixes
(image size, padded state/action widths, prompt length, chunk) lives in the
transformers config; :func:`describe` puts everything together for ``ript info``.

Sources of a pipeline:

- a ript checkpoint: its ``pipeline.json``;
- an openpi checkpoint: its training config's name (``pi0_libero``, ...),
  which openpi does not store in the checkpoint, mapped by
  :data:`OPENPI_CONFIGS` to what openpi's ``create_trained_policy`` composes
  for it (e.g. ``pi0_libero``'s ``AbsoluteActions(make_bool_mask(6, -1))``);
- a lerobot checkpoint: :func:`lerobot_pipeline`.

The output side follows openpi's order: un-normalise the action chunk, then
(with ``delta_action_mask``) add the *un-normalised model-input state* -- in
openpi ``Policy.infer`` hands the normalised, padded state it fed the model
to the output transforms, whose ``Unnormalize`` maps it back before
``AbsoluteActions`` adds it -- then keep the real action dims.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from ript_core.policy.images import RESIZE_METHODS, ResizeMethod
from ript_core.policy.io.tokenizer import PROMPT_FORMATS, PromptFormat

PIPELINE_FILE = "pipeline.json"
MissingCamera = Literal["mask", "zeros", "error"]
MISSING_CAMERA = ("mask", "zeros", "error")


def make_bool_mask(*dims: int) -> tuple[bool, ...]:
    """openpi's ``make_bool_mask``: ``(6, -1)`` -> six True then one False."""
    out: list[bool] = []
    for d in dims:
        out.extend([d > 0] * abs(d))
    return tuple(out)


@attrs.frozen
class CameraSlot:
    """One camera slot of the model, in the model's order.

    ``source`` is the :class:`~ript_core.envs.interfaces.PolicyInput` image
    key that feeds it (``None``: the slot's own name). ``if_missing`` says
    what a sample without that image gets: ``"mask"`` a black image whose
    tokens are masked out (openpi pi0's unused right wrist), ``"zeros"`` a
    black image that is attended (openpi pi0-FAST), ``"error"`` refuse.
    """

    name: str
    source: str | None = None
    if_missing: MissingCamera = "mask"

    def __attrs_post_init__(self) -> None:
        if self.if_missing not in MISSING_CAMERA:
            raise ValueError(
                f"camera slot {self.name!r}: if_missing must be one of {MISSING_CAMERA}, "
                f"got {self.if_missing!r}"
            )

    @property
    def key(self) -> str:
        return self.source or self.name


def _cameras(value: Any) -> tuple[CameraSlot, ...] | None:
    if value is None:
        return None
    out = []
    for item in value:
        if isinstance(item, CameraSlot):
            out.append(item)
        elif isinstance(item, str):
            out.append(CameraSlot(item))
        elif isinstance(item, Mapping):
            unknown = set(item) - {"name", "source", "if_missing"}
            if unknown:
                raise ValueError(
                    f"camera slot {dict(item)} has unknown key(s) {sorted(unknown)}; "
                    "allowed: name, source, if_missing"
                )
            out.append(CameraSlot(**item))
        else:
            raise ValueError(f"a camera slot must be a name or a mapping, got {item!r}")
    return tuple(out)


def _mask(value: Any) -> tuple[bool, ...] | None:
    if value is None:
        return None
    mask = tuple(bool(v) for v in value)
    if not mask:
        raise ValueError("delta_action_mask must not be empty (use null for no delta transform)")
    return mask


@attrs.frozen
class Pipeline:
    """How a checkpoint turns env inputs into model inputs and outputs into actions.

    - ``origin``: where it came from (``ript``, ``openpi:pi0_libero``, ``lerobot``);
    - ``resize``: ``pil`` (openpi's client, bit-exact), ``torch`` (fast,
      antialiased) or ``torch_plain`` (lerobot's resampler), see
      :mod:`ript_core.policy.images`;
    - ``cameras``: the model's slots with their input key and missing-image
      rule; ``None``: the architecture's slots, same names, masked if missing;
    - ``prompt_format``: ``openpi`` or ``joint`` (:mod:`ript_core.policy.io.tokenizer`);
    - ``delta_action_mask``: ``None``, or per action dim whether the
      un-normalised model-input state is added after un-normalising (openpi
      ``AbsoluteActions``; ``pi0_libero``: six True, gripper False).
    """

    origin: str = "ript"
    resize: ResizeMethod = "torch"
    cameras: tuple[CameraSlot, ...] | None = attrs.field(default=None, converter=_cameras)
    prompt_format: PromptFormat = "openpi"
    delta_action_mask: tuple[bool, ...] | None = attrs.field(default=None, converter=_mask)

    def __attrs_post_init__(self) -> None:
        if self.resize not in RESIZE_METHODS:
            raise ValueError(
                f"pipeline resize must be one of {RESIZE_METHODS}, got {self.resize!r}"
            )
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"pipeline prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}"
            )
        if self.cameras is not None:
            names = [c.name for c in self.cameras]
            if len(set(names)) != len(names):
                raise ValueError(f"pipeline camera slots repeat a name: {names}")

    def camera_slots(self, arch_cameras: Sequence[str]) -> tuple[CameraSlot, ...]:
        """The slots, checked against the architecture's camera slots."""
        if self.cameras is None:
            return tuple(CameraSlot(name) for name in arch_cameras)
        names = tuple(c.name for c in self.cameras)
        if names != tuple(arch_cameras):
            raise ValueError(
                f"pipeline camera slots {list(names)} differ from the model's "
                f"{list(arch_cameras)}; they must name the same slots in the same order"
            )
        return self.cameras

    # ---- io -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "resize": self.resize,
            "cameras": None if self.cameras is None else [attrs.asdict(c) for c in self.cameras],
            "prompt_format": self.prompt_format,
            "delta_action_mask": None
            if self.delta_action_mask is None
            else list(self.delta_action_mask),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "pipeline") -> Pipeline:
        allowed = {f.name for f in attrs.fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(
                f"{source}: unknown pipeline key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        return cls(**data)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / PIPELINE_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Pipeline:
        path = Path(directory) / PIPELINE_FILE
        return cls.from_dict(json.loads(path.read_text()), source=str(path))


# ---- known pipelines -------------------------------------------------------------------

# openpi pi0 on LIBERO (LiberoInputs): agent view -> base, wrist -> left wrist,
# right wrist a zero image with mask False (pi0; pi0-FAST would attend it).
_OPENPI_PI0_LIBERO_CAMERAS = (
    CameraSlot("base_0_rgb"),
    CameraSlot("left_wrist_0_rgb"),
    CameraSlot("right_wrist_0_rgb", if_missing="mask"),
)


@attrs.frozen
class OpenpiConfig:
    """What ript needs of one openpi training config (``training/config.py``)."""

    pipeline: Pipeline
    asset_id: str
    action_dim: int  # LiberoOutputs keeps this many dims
    # the observation keys its clients send (``ript serve``, ript_core/serve/inputs.py)
    inputs: str = "libero"


def _openpi_libero(name: str) -> OpenpiConfig:
    return OpenpiConfig(
        pipeline=Pipeline(
            origin=f"openpi:{name}",
            resize="pil",  # the client's image_tools.resize_with_pad
            cameras=_OPENPI_PI0_LIBERO_CAMERAS,
            prompt_format="openpi",  # PaligemmaTokenizer
            # LeRobotLiberoDataConfig(extra_delta_transform=True)
            delta_action_mask=make_bool_mask(6, -1),
        ),
        asset_id="physical-intelligence/libero",
        action_dim=7,
    )


OPENPI_CONFIGS: dict[str, OpenpiConfig] = {
    name: _openpi_libero(name) for name in ("pi0_libero", "pi0_libero_low_mem_finetune")
}
# Configs we know and cannot run (a different model, not a different pipeline).
OPENPI_UNSUPPORTED: dict[str, str] = {
    "pi05_libero": "pi0.5 (adaRMS time conditioning, quantile stats) is not the PI0 architecture",
    "pi0_fast_libero": "pi0-FAST decodes action tokens autoregressively; it is not a flow model",
    "pi0_fast_libero_low_mem_finetune": "pi0-FAST decodes action tokens autoregressively",
}


def openpi_config(name: str) -> OpenpiConfig:
    """The pipeline of openpi training config ``name``; an error names the known ones."""
    if name in OPENPI_CONFIGS:
        return OPENPI_CONFIGS[name]
    known = ", ".join(sorted(OPENPI_CONFIGS))
    if name in OPENPI_UNSUPPORTED:
        raise ValueError(f"openpi config {name!r} cannot run here: {OPENPI_UNSUPPORTED[name]}")
    raise ValueError(
        f"unknown openpi config {name!r}; known: {known}. For another openpi pi0 config, pass "
        "pipeline=Pipeline(...) with its transforms (resize='pil', prompt_format='openpi', its "
        "camera slots and its delta_action_mask, if it has an extra delta transform)"
    )


def lerobot_pipeline() -> Pipeline:
    """lerobot's PI0 processors: torch bilinear without antialiasing, the
    prompt with ``"\\n"`` appended and tokenised jointly, no delta transform
    (``use_relative_actions`` off, its default)."""
    return Pipeline(origin="lerobot", resize="torch_plain", prompt_format="joint")


# ---- description -------------------------------------------------------------------------


def describe(
    pipeline: Pipeline,
    stats: Any,
    arch: Any,
    *,
    tokenizer: Any = None,
    dtype: str = "float32",
    layout: str = "",
) -> dict[str, Any]:
    """The fully resolved pipeline (what ``ript info`` prints): the pipeline's
    choices, the architecture's sizes and the normalisation stats."""
    cfg = arch.pi0_config
    slots = pipeline.camera_slots(arch.cameras)
    mask = pipeline.delta_action_mask
    return {
        "layout": layout,
        "origin": pipeline.origin,
        "images": {
            "size": arch.image_size,
            "resize": pipeline.resize,
            "padding": "centred, black (uint8 0 -> -1 after x/255*2-1)",
            "cameras": [
                {"slot": c.name, "input": c.key, "if_missing": c.if_missing} for c in slots
            ],
        },
        "prompt": {
            "format": pipeline.prompt_format,
            "max_tokens": arch.max_token_len,
            "tokenizer": type(tokenizer).__name__ if tokenizer is not None else None,
        },
        "state": {
            "dim": stats.state.dim,
            "padded_to": int(cfg.max_state_dim),
            "order": "normalise, then zero-pad",
        },
        "actions": {
            "dim": stats.actions.dim,
            "model_dim": int(cfg.max_action_dim),
            "chunk": int(cfg.chunk_size),
            "delta_to_absolute": "none"
            if mask is None
            else (
                f"after un-normalising, action[:{len(mask)}] += un-normalised model-input "
                f"state where mask={[int(m) for m in mask]}"
            ),
        },
        "normalisation": {
            "mode": stats.mode,
            "eps": stats.eps,
            "convention": stats.convention,
            "source": stats.source,
            "state": attrs.asdict(stats.state),
            "actions": attrs.asdict(stats.actions),
        },
        "sampling": {"steps": int(cfg.num_inference_steps), "dtype": dtype},
    }
