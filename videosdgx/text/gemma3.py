"""Gemma 3 text model (decoder only), returning every hidden state, as LTX-2 reads them.

Parameter names follow Hugging Face's `Gemma3TextModel` (`embed_tokens`, `layers.N.self_attn.q_proj`, `norm`).
Per layer: sandwich RMSNorms (input / post-attention / pre- and post-feed-forward) with the `(1 + weight)` scale
computed in float32; grouped-query attention with RMSNorm on each head's queries and keys, RoPE pairing the two
halves of a head, scale `query_pre_attn_scalar ** -0.5`; GELU(tanh)-gated feed-forward. Every `sliding_pattern`-th
layer is global (RoPE base 1e6, positions divided by `rope_global_scale`); the others are causal sliding-window
layers (RoPE base 1e4). Embeddings are multiplied by `sqrt(hidden)` cast to the compute dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.layers.half_rope import apply_half_rope
from videosdgx.runtime.attention import attention


@dataclass(frozen=True)
class Gemma3Config:
    """Sizes and attention settings of a Gemma 3 text model. Defaults are google/gemma-3-12b-it's."""

    vocab: int = 262208
    hidden: int = 3840
    intermediate: int = 15360
    layers: int = 48
    heads: int = 16
    kv_heads: int = 8
    head_dim: int = 256
    sliding_window: int = 1024
    sliding_pattern: int = 6
    rope_global_theta: float = 1_000_000.0
    rope_local_theta: float = 10_000.0
    rope_global_scale: float = 8.0
    query_pre_attn_scalar: float = 256.0
    eps: float = 1e-6

    def is_global(self, layer: int) -> bool:
        """Layers 5, 11, 17, ... (with pattern 6) attend to the whole prefix; the others to a sliding window."""
        return (layer + 1) % self.sliding_pattern == 0


class Gemma3RMSNorm(nn.Module):
    """RMSNorm scaled by `1 + weight` (weights are stored zero-centred), in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps)
        return (normed * (1.0 + self.weight.float())).to(x.dtype)


class Gemma3Attention(nn.Module):
    def __init__(self, cfg: Gemma3Config):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        self.scale = cfg.query_pre_attn_scalar ** -0.5
        self.q_proj = nn.Linear(cfg.hidden, cfg.heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.heads * cfg.head_dim, cfg.hidden, bias=False)
        self.q_norm = Gemma3RMSNorm(cfg.head_dim, cfg.eps)
        self.k_norm = Gemma3RMSNorm(cfg.head_dim, cfg.eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (proj(x).unflatten(-1, (-1, self.head_dim)).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        cos, sin = (t.to(x.dtype) for t in rope)
        q = apply_half_rope(self.q_norm(q), cos, sin)
        k = apply_half_rope(self.k_norm(k), cos, sin)
        groups = self.heads // self.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = attention(q, k, v, mask=mask, scale=self.scale)
        return self.o_proj(out.transpose(1, 2).flatten(2))


class Gemma3MLP(nn.Module):
    def __init__(self, cfg: Gemma3Config):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.up_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, cfg: Gemma3Config):
        super().__init__()
        self.self_attn = Gemma3Attention(cfg)
        self.mlp = Gemma3MLP(cfg)
        self.input_layernorm = Gemma3RMSNorm(cfg.hidden, cfg.eps)
        self.post_attention_layernorm = Gemma3RMSNorm(cfg.hidden, cfg.eps)
        self.pre_feedforward_layernorm = Gemma3RMSNorm(cfg.hidden, cfg.eps)
        self.post_feedforward_layernorm = Gemma3RMSNorm(cfg.hidden, cfg.eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), rope, mask))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


def rope_tables(cfg: Gemma3Config, length: int, device: torch.device, is_global: bool) -> tuple[torch.Tensor, ...]:
    """float32 `(cos, sin)` `[length, head_dim // 2]` for positions 0..length-1 (Hugging Face's float32 recipe)."""
    theta = cfg.rope_global_theta if is_global else cfg.rope_local_theta
    inv_freq = 1.0 / theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32, device=device) / cfg.head_dim)
    if is_global:
        inv_freq = inv_freq / cfg.rope_global_scale
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos(), angles.sin()


def attention_masks(attention_mask: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (global, sliding) masks `[B, 1, T, T]`: causal, padded keys hidden, local keys within `window`.

    Every query also sees itself, so rows of padding tokens stay finite (their outputs are never used).
    """
    length = attention_mask.shape[-1]
    pos = torch.arange(length, device=attention_mask.device)
    offset = pos[:, None] - pos[None, :]
    valid_keys = attention_mask.bool()[:, None, None, :]
    causal = (offset >= 0) & valid_keys
    local = causal & (offset < window)
    diagonal = offset == 0
    return causal | diagonal, local | diagonal


class Gemma3TextModel(nn.Module):
    """`(input_ids [B, T], attention_mask [B, T]) -> layers + 1` hidden states `[B, T, hidden]`.

    Item 0 is the scaled embedding, item i the output of layer i - 1, and the last item the final layer's output
    after the final norm (Hugging Face's `output_hidden_states` convention). Positions are 0..T-1 whatever the
    padding, as in Hugging Face when no position ids are given.
    """

    def __init__(self, cfg: Gemma3Config):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList([Gemma3DecoderLayer(cfg) for _ in range(cfg.layers)])
        self.norm = Gemma3RMSNorm(cfg.hidden, cfg.eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        return hidden_states(self, input_ids, attention_mask, rope_tables,
                             [self.cfg.is_global(i) for i in range(len(self.layers))])


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, tables,
                  global_layers: list[bool]) -> list[torch.Tensor]:
    """Every hidden state of a Gemma text model (`embed_tokens`, `layers`, `norm`, `cfg`): the scaled embedding,
    each layer's output, the last after the final norm. `tables(cfg, length, device, is_global)` gives the RoPE of
    the global and sliding-window layers; `global_layers` says which kind each layer is."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    cfg, weight = model.cfg, model.embed_tokens.weight
    x = F.embedding(input_ids, weight) * torch.tensor(cfg.hidden ** 0.5, dtype=weight.dtype)
    length, device = input_ids.shape[1], input_ids.device
    masks = attention_masks(attention_mask, cfg.sliding_window)
    ropes = [tables(cfg, length, device, is_global) for is_global in (True, False)]
    states = [x]
    for layer, is_global in zip(model.layers, global_layers):
        kind = 0 if is_global else 1
        x = layer(x, ropes[kind], masks[kind])
        states.append(x)
    states[-1] = model.norm(x)
    return states
