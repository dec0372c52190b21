"""MAGI-1's special tokens (`special_tokens.npz`): learned T5-space rows prepended to every chunk's caption.

The reference pipeline (PAD_HQ=1, PAD_DURATION=1) prepends the "high quality" token, then a per-chunk duration
token, each shifting the caption right and truncating it to its length; the mask gains a leading 1 each time.
Rows are rounded to float16 first, as the reference loads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from videosdgx.runtime.errors import CheckpointError

HQ_ROW = 1
DURATION_ROWS = range(7, 15)  # DURATION_TOKEN_1..8: "1 chunk remains" .. "8 or more chunks remain"
KEYS = ("caption_token", "logo_token", "other_tokens")


@dataclass(frozen=True)
class SpecialTokens:
    other: torch.Tensor  # [100, C] float32 (float16-rounded)

    def to(self, device: torch.device | str) -> "SpecialTokens":
        return SpecialTokens(self.other.to(device))

    @property
    def high_quality(self) -> torch.Tensor:
        return self.other[HQ_ROW]

    def duration(self, chunks_left: int) -> torch.Tensor:
        """The duration token of a chunk with `chunks_left - 1` chunks after it (capped at 8)."""
        return self.other[DURATION_ROWS[min(chunks_left, len(DURATION_ROWS)) - 1]]


def load_special_tokens(path: str | os.PathLike) -> SpecialTokens:
    try:
        with np.load(path) as data:
            missing = [k for k in KEYS if k not in data]
            if missing:
                raise CheckpointError(f"{path} has no {', '.join(missing)}: it is not MAGI-1's special_tokens.npz. "
                                      "Install it with `install.py --models magi-1-4.5b-distill`.")
            other = torch.from_numpy(data["other_tokens"].astype(np.float16)).float()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot read MAGI-1 special tokens {path}: {exc}.") from None
    return SpecialTokens(other)


def prepend(caption: torch.Tensor, mask: torch.Tensor, token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`token` before `caption [L, C]` (mask `[L]`), keeping length L."""
    length = caption.shape[0]
    caption = torch.cat([token.to(caption)[None], caption])[:length]
    mask = torch.cat([mask.new_ones(1), mask])[:length]
    return caption, mask


def chunk_captions(prompts: list[tuple[torch.Tensor, torch.Tensor]], tokens: SpecialTokens, clean_chunks: int,
                   null: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chunk conditional captions `[clean + n, L, C]` and masks from one (embedding, mask) per denoised chunk.

    Clean prefix chunks get the null caption with an empty mask; denoised chunk i of n gets
    `[duration(n - i), high quality, caption...]`.
    """
    rows, masks = [null] * clean_chunks, [torch.zeros(null.shape[0], device=null.device)] * clean_chunks
    n = len(prompts)
    for i, (caption, mask) in enumerate(prompts):
        caption, mask = prepend(caption.float(), mask.float(), tokens.high_quality)
        caption, mask = prepend(caption, mask, tokens.duration(n - i))
        rows.append(caption)
        masks.append(mask)
    return torch.stack(rows), torch.stack(masks)
