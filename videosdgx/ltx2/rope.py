"""LTX-2 rotary position embedding: fractional positions in seconds / pixels, "split" or "interleaved" layout.

A token's position on each axis is the middle of its [start, end) bounds divided by that axis's `max_pos`, mapped
to [-1, 1]. Frequencies `theta ** linspace(0, 1, dim // (2 * axes)) * pi / 2` (float64 grid when the checkpoint
says `frequencies_precision: float64`, then float32) are laid out frequency-major, axis-minor and left-padded with
identity rotations to `dim / 2`. The tables are grouped into `heads` chunks of the width: "split" rotates the two
halves of each chunk against each other, "interleaved" rotates adjacent channel pairs (layers/rope.apply_rope).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from videosdgx.layers.rope import RopeFreqs, apply_rope


def rope_tables(
    positions: torch.Tensor,
    dim: int,
    heads: int,
    max_pos: Sequence[int],
    theta: float,
    float64_grid: bool,
) -> RopeFreqs:
    """(cos, sin) float32 `[B, heads, T, dim / (2 * heads)]` for `positions [B, axes, T, 2]` (start, end bounds)."""
    axes = positions.shape[1]
    if axes != len(max_pos):
        raise ValueError(f"positions have {axes} axes, max_pos has {len(max_pos)}")
    grid_dtype = torch.float64 if float64_grid else torch.float32
    exponents = torch.linspace(0.0, 1.0, dim // (2 * axes), dtype=grid_dtype, device=positions.device)
    freqs = (theta ** exponents * (math.pi / 2)).float()
    middle = positions.float().mean(dim=-1)  # [B, axes, T]
    fractions = torch.stack([middle[:, i] / max_pos[i] for i in range(axes)], dim=-1)  # [B, T, axes]
    angles = ((fractions[..., None] * 2 - 1) * freqs).transpose(-1, -2).flatten(2)  # [B, T, k * axes]
    pad = dim // 2 - angles.shape[-1]
    cos = torch.cat([torch.ones_like(angles[..., :pad]), angles.cos()], dim=-1)
    sin = torch.cat([torch.zeros_like(angles[..., :pad]), angles.sin()], dim=-1)
    return tuple(t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (cos, sin))  # type: ignore[return-value]


def apply_ltx_rope(x: torch.Tensor, freqs: RopeFreqs, rope_type: str) -> torch.Tensor:
    """Rotate `x [B, T, width]` in float32 with tables from `rope_tables` (their head grouping, not the caller's)."""
    heads = freqs[0].shape[1]
    grouped = x.float().unflatten(-1, (heads, -1)).transpose(1, 2)  # [B, H, T, width / H]
    if rope_type == "interleaved":
        rotated = apply_rope(grouped, freqs)
    else:
        cos, sin = freqs
        first, second = grouped.chunk(2, dim=-1)
        rotated = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
    return rotated.transpose(1, 2).flatten(2).to(x.dtype)


def video_positions(
    frames: int, height: int, width: int, fps: float, batch: int = 1, scale: Sequence[int] = (8, 32, 32),
    causal_offset: int = 1, device: torch.device | str | None = None,
) -> torch.Tensor:
    """[start, end) bounds `[B, 3, frames*height*width, 2]` of each latent voxel: time in seconds, space in pixels.

    The causal VAE's first latent frame holds one pixel frame: time bounds are shifted by `1 - scale_t` and
    clamped at 0, then divided by `fps`.
    """
    grid = torch.stack(torch.meshgrid(
        *(torch.arange(n, dtype=torch.float32, device=device) for n in (frames, height, width)), indexing="ij"
    )).flatten(1)  # [3, N]
    factors = torch.tensor(scale, dtype=torch.float32, device=device)[:, None, None]
    bounds = torch.stack([grid, grid + 1], dim=-1) * factors
    bounds[0] = ((bounds[0] + causal_offset - scale[0]).clamp(min=0)) / fps
    return bounds[None].expand(batch, -1, -1, -1)


def audio_positions(
    frames: int, batch: int = 1, latent_scale: int = 4, hop_length: int = 160, sample_rate: int = 16000,
    causal_offset: int = 1, device: torch.device | str | None = None,
) -> torch.Tensor:
    """[start, end) bounds in seconds `[B, 1, frames, 2]` of each audio latent frame (`latent_scale` mel frames)."""
    index = torch.arange(frames, dtype=torch.float32, device=device)
    bounds = torch.stack([index, index + 1], dim=-1) * latent_scale
    seconds = (bounds + causal_offset - latent_scale).clamp(min=0) * hop_length / sample_rate
    return seconds[None, None].expand(batch, -1, -1, -1)


def keyframe_positions(
    frames: int, height: int, width: int, pixel_frame: int, fps: float, pixel_frames: int = 1, batch: int = 1,
    scale: Sequence[int] = (8, 32, 32), device: torch.device | str | None = None,
) -> torch.Tensor:
    """RoPE bounds `[B, 3, frames*height*width, 2]` of keyframe latents appended after the video's tokens, placed at
    pixel frame `pixel_frame` (ltx-core `VideoConditionByKeyframeIndex`): no causal shift, time offset by
    `pixel_frame`, narrowed to `[pixel_frame, pixel_frame + 1)` when the latents hold one pixel frame, in seconds."""
    bounds = video_positions(frames, height, width, 1.0, batch, scale, causal_offset=scale[0], device=device).clone()
    bounds[:, 0] += pixel_frame
    if pixel_frames == 1:
        bounds[:, 0, :, 1] = bounds[:, 0, :, 0] + 1
    bounds[:, 0] /= fps
    return bounds
