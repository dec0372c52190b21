"""Multi-axis rotary position embedding that rotates adjacent (interleaved) channel pairs.

The head dimension is split into bands, one per axis (e.g. time, height, width). Band `i` of size `d_i`
rotates its `d_i / 2` channel pairs `(x[2j], x[2j+1])` by `position_i * theta ** (-2j / d_i)`.
Angles are computed in float64 (or float32 where a reference builds its table so) and the rotation is applied
in float32.
"""

from collections.abc import Sequence
from functools import lru_cache

import torch

RopeFreqs = tuple[torch.Tensor, torch.Tensor]


def axis_inverse_frequencies(dim: int, theta: float = 10000.0, precision: torch.dtype = torch.float64) -> torch.Tensor:
    """`theta ** (-2j / dim)` for j = 0 .. dim/2 - 1, computed in `precision`."""
    if dim % 2:
        raise ValueError(f"a rotary band needs an even size, got {dim}")
    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=precision) / dim)


def rope_frequencies(
    axes_dims: Sequence[int],
    positions: Sequence[int] | torch.Tensor,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
    precision: torch.dtype = torch.float64,
) -> RopeFreqs:
    """Cosine and sine tables for `apply_rope`.

    `positions` is either the grid size per axis (tokens enumerate the grid in row-major order, positions
    0..n-1 on every axis; the result is cached) or a tensor `[..., tokens, len(axes_dims)]` of explicit,
    possibly fractional, positions. Angles are computed in `precision`. Returns `(cos, sin)`, float32
    `[..., tokens, sum(axes_dims) // 2]`.
    """
    if isinstance(positions, torch.Tensor):
        if positions.shape[-1] != len(axes_dims):
            raise ValueError(f"positions carry {positions.shape[-1]} axes, axes_dims has {len(axes_dims)}")
        angles = torch.cat(
            [
                positions[..., axis, None].to(precision)
                * axis_inverse_frequencies(dim, theta, precision).to(positions.device)
                for axis, dim in enumerate(axes_dims)
            ],
            dim=-1,
        )
        return angles.cos().float().to(device), angles.sin().float().to(device)
    if len(positions) != len(axes_dims):
        raise ValueError(f"grid has {len(positions)} axes, axes_dims has {len(axes_dims)}")
    device = torch.device(device or "cpu")
    return _grid_frequencies(tuple(axes_dims), tuple(positions), float(theta), device, precision)


@lru_cache(maxsize=16)
def _grid_frequencies(
    axes_dims: tuple[int, ...], sizes: tuple[int, ...], theta: float, device: torch.device,
    precision: torch.dtype = torch.float64,
) -> RopeFreqs:
    """Per-axis tables broadcast over the grid and concatenated band after band."""
    cos_bands, sin_bands = [], []
    for axis, (dim, size) in enumerate(zip(axes_dims, sizes)):
        angles = torch.arange(size, dtype=precision)[:, None] * axis_inverse_frequencies(dim, theta, precision)
        view = [1] * len(sizes) + [dim // 2]
        view[axis] = size
        cos_bands.append(angles.cos().view(view).expand(*sizes, dim // 2))
        sin_bands.append(angles.sin().view(view).expand(*sizes, dim // 2))
    cos = torch.cat(cos_bands, dim=-1).flatten(0, -2)
    sin = torch.cat(sin_bands, dim=-1).flatten(0, -2)
    return cos.float().to(device), sin.float().to(device)


def apply_rope(x: torch.Tensor, freqs: RopeFreqs) -> torch.Tensor:
    """Rotate adjacent channel pairs of `x [batch, heads, tokens, head_dim]` in float32.

    `freqs` is `(cos, sin)` from `rope_frequencies`, broadcastable to `[batch, heads, tokens, head_dim // 2]`
    (a `[tokens, head_dim // 2]` table applies the same rotation to every head and sample).
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * torch.complex(*freqs)).flatten(-2).to(x.dtype)
