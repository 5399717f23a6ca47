"""The policy's preprocessed batch: what one forward needs, nothing env-specific.

Images are kept resized but still uint8 (4x smaller than float pixels), so a
trainer can store a whole rollout's batches for PPO re-scoring; the [-1, 1]
float conversion is deterministic and happens at model-input time.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch


@attrs.frozen
class PolicyBatch:
    """``B`` observations, preprocessed.

    - ``images`` ``[B, n_cameras, 3, S, S] uint8``: resized with padding, in
      the order of the policy's camera slots;
    - ``image_masks`` ``[B, n_cameras] bool``: False where a sample has no
      image for that slot (the slot's tokens are masked out);
    - ``tokens`` / ``token_masks`` ``[B, max_token_len]``: prompt ids and
      their validity (padding is False);
    - ``state`` ``[B, max_state_dim] float32``: normalised, zero-padded;
    - ``raw_state`` ``[B, state_dim] float32``: as given, for inspection.
      The delta->absolute output transform does *not* use it: like openpi it
      adds ``state`` un-normalised (see ``PI0Policy.postprocess``).
    - ``cameras_present``: per slot, whether any sample has an image there,
      as host booleans (``image_masks.any(0)``), or ``None`` when unknown.
      Preprocessing knows it before the masks reach the GPU; the policy's
      ``drop_missing_cameras`` reads it instead of the device masks, so a
      rollout call never waits for the GPU (the runner queues the next
      group's call behind the running one). Not a tensor: ``select`` drops it.
    """

    images: torch.Tensor
    image_masks: torch.Tensor
    tokens: torch.Tensor
    token_masks: torch.Tensor
    state: torch.Tensor
    raw_state: torch.Tensor
    cameras_present: tuple[bool, ...] | None = attrs.field(default=None, eq=False)

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def device(self) -> torch.device:
        return self.state.device

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in TENSOR_FIELDS}

    def to(self, device: torch.device | str) -> PolicyBatch:
        """On ``device``. Host -> CUDA copies go through pinned memory without
        a host sync: they are queued behind whatever the GPU is running."""
        device = torch.device(device)
        return PolicyBatch(
            **{k: to_device(v, device) for k, v in self._tensors().items()},
            cameras_present=self.cameras_present,
        )

    def select(self, index: torch.Tensor | slice | Sequence[int]) -> PolicyBatch:
        """Rows ``index`` (a minibatch for the PPO update)."""
        if not isinstance(index, slice | torch.Tensor):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return PolicyBatch(**{k: v[index] for k, v in self._tensors().items()})

    @classmethod
    def cat(cls, batches: Sequence[PolicyBatch]) -> PolicyBatch:
        if not batches:
            raise ValueError("cannot concatenate zero batches")
        present = [b.cameras_present for b in batches]
        return cls(
            **{
                name: torch.cat([getattr(b, name) for b in batches], dim=0)
                for name in TENSOR_FIELDS
            },
            cameras_present=None
            if any(p is None for p in present)
            else tuple(any(col) for col in zip(*present, strict=True)),
        )


#: the tensor fields, in order (``cameras_present`` is host metadata)
TENSOR_FIELDS = ("images", "image_masks", "tokens", "token_masks", "state", "raw_state")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; a host -> CUDA copy is pinned and non-blocking."""
    if t.device.type == "cpu" and device.type == "cuda":
        # pageable host memory would make the copy wait for the GPU's queue
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
