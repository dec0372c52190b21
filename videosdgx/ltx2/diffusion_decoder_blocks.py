"""Blocks of the LTX-2.5 diffusion video decoder, channels-last (`[B, T, H, W, C]`) throughout.

Parameter names are ltx-core's after loading (`attn.qkv.to_q`, `attn.proj`, `attn.q_norm`, `mlp.w_gate`, ...):
the release's fused `attn.qkv` and its static gates are converted at load (diffusion_decoder_keys.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.layers.norms import RMSNorm
from videosdgx.ltx2.neighborhood import neighborhood_attention

Kernel = tuple[int, int, int]
MLP_TOKENS = 16384  # SwiGLU tokens per pass (ltx-core's tile): bounds the hidden-width activations


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Channels of each head rotated by the (T, H, W) position: a quarter (even) to T, the rest halved (even)."""
    if head_dim % 8:
        raise ValueError(f"The diffusion decoder's head size must be a multiple of 8, got {head_dim}.")
    dim_t = head_dim // 4 // 2 * 2
    dim_hw = (head_dim - dim_t) // 2
    if dim_hw % 2:
        dim_t -= 2
        dim_hw = (head_dim - dim_t) // 2
    return dim_t, dim_hw, dim_hw


def axis_rope(x: torch.Tensor, split: tuple[int, int, int], base: float = 10000.0,
              frames_per_pass: int = 4) -> torch.Tensor:
    """Absolute 3D RoPE on `x [B, T, H, W, heads, head_dim]`: interleaved pairs, positions 0.. per axis, computed
    in fp32 a few frames at a time (the fp32 temporaries stay small)."""
    steps = range(0, x.shape[1], frames_per_pass)
    return torch.cat([_rope(x[:, t:t + frames_per_pass], split, base, t) for t in steps], dim=1)


def _rope(x: torch.Tensor, split: tuple[int, int, int], base: float, first_frame: int) -> torch.Tensor:
    out, start = torch.empty_like(x), 0
    for axis, dim in enumerate(split):
        inv = (1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64, device=x.device) / dim)).float()
        positions = torch.arange(x.shape[axis + 1], dtype=torch.float32, device=x.device) + (first_frame * (axis == 0))
        angles = positions[:, None] * inv
        shape = [1] * 6
        shape[axis + 1], shape[-1] = x.shape[axis + 1], dim // 2
        turn = torch.polar(torch.ones_like(angles), angles).view(shape)  # cos + i sin
        pairs = torch.view_as_complex(x[..., start:start + dim].float().unflatten(-1, (dim // 2, 2)))
        out[..., start:start + dim] = torch.view_as_real(pairs * turn).flatten(-2)
        start += dim
    return out


class QKV(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))


class NeighborhoodAttention(nn.Module):
    """Heads of `head_dim`; q / k RMS-normed per head, q scaled, both rotated, then windowed attention."""

    def __init__(self, dim: int, kernel: Kernel, head_dim: int):
        super().__init__()
        self.kernel, self.head_dim = tuple(kernel), head_dim
        self.qkv = QKV(dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm, self.k_norm = RMSNorm(head_dim), RMSNorm(head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = x.shape[-1] // self.head_dim
        split = rope_split(self.head_dim)

        def project(linear: nn.Linear) -> torch.Tensor:
            return linear(x).unflatten(-1, (heads, self.head_dim))

        q = axis_rope(self.q_norm(project(self.qkv.to_q)) * self.head_dim ** -0.5, split)
        k = axis_rope(self.k_norm(project(self.qkv.to_k)), split)
        out = neighborhood_attention(q, k, project(self.qkv.to_v), self.kernel)
        return self.proj(out.flatten(-2))


class SwiGLU(nn.Module):
    """`w_down(silu(w_gate(x)) * w_up(x))`, hidden width `4 * dim` rounded up to 16, a few thousand tokens at a time."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = (dim * 4 + 15) // 16 * 16
        self.w_up = nn.Linear(dim, hidden, bias=False)
        self.w_gate = nn.Linear(dim, hidden, bias=False)
        self.w_down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.cat([self.w_down(F.silu(self.w_gate(part)) * self.w_up(part))
                         for part in flat.split(MLP_TOKENS)])
        return out.reshape(x.shape)


class NABlock(nn.Module):
    """Deterministic stage block: pre-norm neighbourhood attention and SwiGLU, plain residuals."""

    def __init__(self, dim: int, kernel: Kernel, head_dim: int):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = NeighborhoodAttention(dim, kernel, head_dim)
        self.mlp = SwiGLU(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


MODULATION_ROWS = 7  # scale/shift/gate (attention), scale/shift/gate (MLP), context gate; the gates are unused


class SharedAdaLN(nn.Module):
    """The diffusion stage's one timestep modulation: `proj(silu(embedding))` as `[B, 7, C]` rows."""

    def __init__(self, dim: int, t_emb_dim: int):
        super().__init__()
        self.proj = nn.Linear(t_emb_dim, MODULATION_ROWS * dim)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        return self.proj(F.silu(embedded)).unflatten(-1, (MODULATION_ROWS, -1))


class DiffusionNABlock(nn.Module):
    """Pixel-diffusion block: adds the projected context, then AdaLN-modulated attention and SwiGLU (the shared
    modulation plus the block's `scale_shift_table`; residuals ungated, the release's gates are folded in)."""

    def __init__(self, dim: int, context_dim: int, kernel: Kernel, head_dim: int):
        super().__init__()
        self.context_proj = nn.Linear(context_dim, dim)
        self.scale_shift_table = nn.Parameter(torch.zeros(MODULATION_ROWS, dim))
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.attn = NeighborhoodAttention(dim, kernel, head_dim)
        self.mlp = SwiGLU(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, modulation: torch.Tensor) -> torch.Tensor:
        """`modulation [B, 7, C]` (shared AdaLN output)."""
        rows = (modulation + self.scale_shift_table.to(modulation))[:, :, None, None, None, :].to(x.dtype)
        scale_msa, shift_msa, _, scale_mlp, shift_mlp = rows.unbind(1)[:5]
        x = x + self.context_proj(context)
        x = x + self.attn(self.norm1(x) * (1 + scale_msa) + shift_msa)
        return x + self.mlp(self.norm2(x) * (1 + scale_mlp) + shift_mlp)


class PixelShuffleUp(nn.Module):
    """Linear to `prod(stride) * out` channels, then depth-to-space (channel order `c t h w`); a temporal stride
    of 2 makes a duplicate first frame, which is dropped (causal 1 -> 1, then 2 per frame) unless `drop_leading`
    is False (a temporal tile after the first: its first frame is an inner one, both its frames are real)."""

    def __init__(self, channels: int, stride: Kernel, reduction: int):
        super().__init__()
        self.stride, self.out_channels = tuple(stride), channels // reduction
        self.proj = nn.Linear(channels, math.prod(stride) * self.out_channels)

    def forward(self, x: torch.Tensor, drop_leading: bool = True) -> torch.Tensor:
        b, t, h, w, _ = x.shape
        st, sh, sw = self.stride
        x = self.proj(x).reshape(b, t, h, w, self.out_channels, st, sh, sw)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, t * st, h * sh, w * sw, self.out_channels)
        return x[:, 1:] if st == 2 and drop_leading else x
