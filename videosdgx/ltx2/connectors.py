"""LTX-2 embeddings connectors: the 1D transformers that turn projected Gemma features into DiT text contexts.

One connector per modality (`video_embeddings_connector`, `audio_embeddings_connector`), parameter names as in the
official single-file checkpoint (under `model.diffusion_model.`). Forward, for left-padded prompts:
1. register substitution: each prompt's valid tokens move to the front (order kept) and every remaining position
   `i` takes `learnable_registers[i mod R]`, so the whole sequence is attended to (length must be a multiple of R);
2. blocks `h += attn1(rms(h))`, `h += ff(rms(h))` (RMSNorm without weight), self-attention with RMSNorm on the
   full query / key width, 1D RoPE and (LTX-2.3) a per-head output gate `2 * sigmoid(to_gate_logits(x))`;
3. a final RMSNorm without weight.
RoPE: position `p = i / max_pos`, angle `(2p - 1) * theta ** linspace(0, 1, D/2) * pi/2` (grid in float64 when
`double_precision`, then float32). "split" gives head `h` the angles `h*d/2 .. (h+1)*d/2` and rotates the two halves
of the head; "interleaved" repeats each angle twice and rotates adjacent channel pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.layers.half_rope import apply_half_rope
from videosdgx.layers.norms import RMSNorm
from videosdgx.layers.rope import apply_rope
from videosdgx.runtime.attention import attention

EPS = 1e-6


@dataclass(frozen=True)
class ConnectorConfig:
    """One connector. LTX-2 19B: 30 heads x 128, 2 layers; LTX-2.3: 8 gated layers, video 32 x 128, audio 32 x 64."""

    heads: int
    head_dim: int
    layers: int
    registers: int = 128
    ff_dim: int | None = None  # default 4 x width
    gated: bool = False
    rope_type: str = "split"
    rope_max_pos: float = 4096.0
    rope_theta: float = 10000.0
    rope_double_precision: bool = True

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim


def connector_rope(cfg: ConnectorConfig, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 `(cos, sin)` `[length, heads, head_dim // 2]` for positions 0..length-1."""
    grid_dtype = torch.float64 if cfg.rope_double_precision else torch.float32
    steps = torch.linspace(0.0, 1.0, cfg.dim // 2, dtype=grid_dtype, device=device)
    freqs = (cfg.rope_theta ** steps * (math.pi / 2)).float()
    position = torch.arange(length, dtype=torch.float32, device=device) / cfg.rope_max_pos
    angles = (position[:, None] * 2 - 1) * freqs
    angles = angles.unflatten(-1, (cfg.heads, -1))
    return angles.cos(), angles.sin()


class ConnectorAttention(nn.Module):
    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.q_norm = RMSNorm(dim, eps=EPS)
        self.k_norm = RMSNorm(dim, eps=EPS)
        self.to_gate_logits = nn.Linear(dim, cfg.heads) if cfg.gated else None

    def _rotate(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x.unflatten(-1, (self.cfg.heads, -1))  # [B, T, H, d]
        if self.cfg.rope_type == "split":
            return apply_half_rope(x, *rope)
        return apply_rope(x, rope)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q = self._rotate(self.q_norm(self.to_q(x)), rope).transpose(1, 2)
        k = self._rotate(self.k_norm(self.to_k(x)), rope).transpose(1, 2)
        v = self.to_v(x).unflatten(-1, (self.cfg.heads, -1)).transpose(1, 2)
        out = attention(q, k, v).transpose(1, 2)  # [B, T, H, d]
        if self.to_gate_logits is not None:
            out = out * (2.0 * torch.sigmoid(self.to_gate_logits(x)))[..., None]
        return self.to_out[0](out.flatten(2))


class GeluProjection(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """`net.0.proj` -> GELU(tanh) -> `net.2`, the official key names."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleList([GeluProjection(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class ConnectorBlock(nn.Module):
    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.attn1 = ConnectorAttention(cfg)
        self.ff = FeedForward(cfg.dim, cfg.ff_dim or 4 * cfg.dim)

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        h = h + self.attn1(_rms(h), rope)
        return h + self.ff(_rms(h))


def _rms(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x.float(), (x.shape[-1],), None, EPS).to(x.dtype)


class EmbeddingsConnector(nn.Module):
    """`(features [B, T, D], mask [B, T]) -> [B, T, D]`, every position valid afterwards."""

    def __init__(self, cfg: ConnectorConfig):
        super().__init__()
        self.cfg = cfg
        self.learnable_registers = nn.Parameter(torch.zeros(cfg.registers, cfg.dim))
        self.transformer_1d_blocks = nn.ModuleList([ConnectorBlock(cfg) for _ in range(cfg.layers)])

    def substitute_registers(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Valid tokens to the front in order, registers (by absolute position) behind them."""
        batch, length, dim = x.shape
        if length % self.cfg.registers:
            raise ValueError(f"sequence length {length} is not a multiple of the {self.cfg.registers} registers")
        valid = mask.bool()
        order = torch.argsort((~valid).int(), dim=1, stable=True)
        front = torch.gather(x, 1, order[..., None].expand(-1, -1, dim))
        registers = self.learnable_registers.to(x.dtype).repeat(length // self.cfg.registers, 1)
        keep = torch.arange(length, device=x.device)[None, :] < valid.sum(1, keepdim=True)
        return torch.where(keep[..., None], front, registers[None])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.substitute_registers(x, mask)
        rope = connector_rope(self.cfg, h.shape[1], h.device)
        for block in self.transformer_1d_blocks:
            h = block(h, rope)
        return _rms(h)
