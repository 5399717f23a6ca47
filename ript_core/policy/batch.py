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
    """

    images: torch.Tensor
    image_masks: torch.Tensor
    tokens: torch.Tensor
    token_masks: torch.Tensor
    state: torch.Tensor
    raw_state: torch.Tensor

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def device(self) -> torch.device:
        return self.state.device

    def to(self, device: torch.device | str) -> PolicyBatch:
        return PolicyBatch(
            **{f.name: getattr(self, f.name).to(device) for f in attrs.fields(PolicyBatch)}
        )

    def select(self, index: torch.Tensor | slice | Sequence[int]) -> PolicyBatch:
        """Rows ``index`` (a minibatch for the PPO update)."""
        if not isinstance(index, slice | torch.Tensor):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return PolicyBatch(
            **{f.name: getattr(self, f.name)[index] for f in attrs.fields(PolicyBatch)}
        )

    @classmethod
    def cat(cls, batches: Sequence[PolicyBatch]) -> PolicyBatch:
        if not batches:
            raise ValueError("cannot concatenate zero batches")
        return cls(
            **{
                f.name: torch.cat([getattr(b, f.name) for b in batches], dim=0)
                for f in attrs.fields(PolicyBatch)
            }
        )
