"""Sinusoidal embeddings shared by every model family."""

import math

import torch
import torch.nn.functional as F


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal embedding of (fractional) timesteps `t [...]` -> float32 `[..., dim]`.

    Frequencies are `max_period ** (-k / (dim // 2 - downscale_freq_shift))`; the output is `[cos, sin]` when
    `flip_sin_to_cos` (Wan, diffusers `Timesteps(dim, True, 0)`) and `[sin, cos]` otherwise; an odd `dim` gets
    one trailing zero. Computed in float64 as the Wan reference does, then rounded to float32.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float64, device=t.device) / (half - downscale_freq_shift)
    angles = t.double()[..., None] * torch.exp(-math.log(max_period) * exponent)
    halves = [angles.cos(), angles.sin()] if flip_sin_to_cos else [angles.sin(), angles.cos()]
    return F.pad(torch.cat(halves, dim=-1), (0, dim % 2)).float()
