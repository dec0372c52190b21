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
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Sinusoidal embedding of (fractional) timesteps `t [...]` -> float32 `[..., dim]`.

    Frequencies are `max_period ** (-k / (dim // 2 - downscale_freq_shift))`; the output is `[cos, sin]` when
    `flip_sin_to_cos` (Wan, diffusers `Timesteps(dim, True, 0)`) and `[sin, cos]` otherwise; an odd `dim` gets
    one trailing zero. Computed in `compute_dtype`: float64 as the Wan reference does, float32 as diffusers'
    `get_timestep_embedding` (LTX-2); the result is float32.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=compute_dtype, device=t.device)
    angles = t.to(compute_dtype)[..., None] * torch.exp(exponent / (half - downscale_freq_shift))
    halves = [angles.cos(), angles.sin()] if flip_sin_to_cos else [angles.sin(), angles.cos()]
    return F.pad(torch.cat(halves, dim=-1), (0, dim % 2)).float()
