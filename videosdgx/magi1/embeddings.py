"""MAGI-1's timestep embedding and learned-band 3-D rotary embedding (magi1.md §3.1), in the official float32 order."""

from __future__ import annotations

import math

import torch
from torch import nn

from videosdgx.magi1.precision import keep_float32


def magi_timestep_embedding(t: torch.Tensor, dim: int = 256, scale: float = 1000.0) -> torch.Tensor:
    """`[cos, sin]` of `t * freqs * scale`, computed in float32 in the reference's operation order.

    (layers.embeddings computes in float64; at arguments near 1000 the float32 rounding of the reference differs
    from that by up to 1e-4, so MAGI-1 keeps its own order.)
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None] * scale
    return torch.cat([args.cos(), args.sin()], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, cond_dim: int, frequency_dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        keep_float32(self)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(magi_timestep_embedding(t))


class LearnedRope(nn.Module):
    """3-D rotary angles with learned bands: `bands` frequencies per axis (t, h, w), rotating 6*bands dims."""

    def __init__(self, head_dim: int):
        super().__init__()
        bands = head_dim // 8
        self.bands = nn.Parameter(1.0 / 10000.0 ** (torch.arange(bands, dtype=torch.float32) / bands))
        keep_float32(self)

    def forward(self, frames: int, height: int, width: int, keep_last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) `[keep_last, 3*bands]` for the last `keep_last` tokens of a `(frames, height, width)` grid.

        Height and width positions are centred and rescaled to a 16x16 reference area, as the reference does.
        """
        device = self.bands.device
        sizes = (frames, height, width)
        axes = [torch.arange(s, device=device, dtype=torch.float32) for s in sizes]
        axes[1] = axes[1] - (height - 1) / 2
        axes[2] = axes[2] - (width - 1) / 2
        rescale = math.sqrt(height * width / 256)
        reference = (frames, height / rescale, width / rescale)
        axes = [a if f == 1 else a / (f - 1) * (r - 1) for a, f, r in zip(axes, sizes, reference)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        angles = (grid[..., None] * self.bands.float()).reshape(frames * height * width, -1)[-keep_last:]
        return angles.cos(), angles.sin()


def apply_half_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `2 * cos.shape[-1]` channels of `x [..., tokens, heads, dim]` as two halves (NeoX style)."""
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c, rest], dim=-1)
