"""Rotary position embedding that pairs the first and second half of each head (`rotate_half` style).

Channel `j` of the first half rotates with channel `j` of the second half: `out1 = x1 cos - x2 sin`,
`out2 = x2 cos + x1 sin`. Gemma 3 and LTX-2 ("split" RoPE) use this pairing; `layers.rope` pairs adjacent channels.
"""

import torch


def apply_half_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x [..., head_dim]` by angles whose `cos`/`sin` broadcast to `[..., head_dim // 2]`.

    Computed in the dtype of `cos`/`sin` (pass float32 tables for a float32 rotation), returned in `x`'s dtype.
    """
    x1, x2 = x.to(cos.dtype).chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
