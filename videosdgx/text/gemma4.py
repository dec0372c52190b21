"""Gemma 4 text model (decoder only, the `gemma4_unified` language model LTX-2.5 fine-tuned), returning every
hidden state as LTX-2.5 reads them.

Parameter names follow Hugging Face's `Gemma4UnifiedTextModel` (`embed_tokens`, `layers.N.self_attn.q_proj`,
`layers.N.layer_scalar`, `norm`). What differs from Gemma 3 (`text.gemma3`):
* RMSNorms scale by `weight` (not `1 + weight`); values get a weightless RMSNorm too; attention scale 1
  (the query / key norms carry it);
* global ("full attention") layers have their own head size and KV head count, may have no `v_proj` (values
  are the raw key projection: `attention_k_eq_v`), and use "proportional" RoPE: base 1e6 over the first
  `partial_rotary_factor` of the head's angle pairs, the rest unrotated; sliding layers: RoPE base 1e4;
* each layer's output is multiplied by its stored `layer_scalar`.
Text tokens attend causally (`use_bidirectional_attention="vision"` only affects image tokens, which LTX never
gives). KV-shared layers (`num_kv_shared_layers`, the small E2B/E4B models) are not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.layers.half_rope import apply_half_rope
from videosdgx.runtime.attention import attention
from videosdgx.text.gemma3 import Gemma3MLP, hidden_states


@dataclass(frozen=True)
class Gemma4Config:
    """Sizes and attention settings of a Gemma 4 text model. Attention defaults are transformers'
    `Gemma4UnifiedTextConfig` defaults (the 12B's own values are UNVERIFIED without its config.json)."""

    vocab: int = 262144
    hidden: int = 3840
    intermediate: int = 15360
    global_layers: tuple[bool, ...] = ()  # per layer: full attention (True) or sliding window
    heads: int = 16
    kv_heads: int = 8
    head_dim: int = 256
    global_kv_heads: int = 8
    global_head_dim: int = 512
    k_eq_v: bool = False
    sliding_window: int = 1024
    rope_local_theta: float = 10_000.0
    rope_global_theta: float = 1_000_000.0
    global_partial_rotary: float = 0.25
    eps: float = 1e-6

    @property
    def layers(self) -> int:
        return len(self.global_layers)


class Gemma4RMSNorm(nn.Module):
    """RMSNorm scaled by `weight` (no weight: plain normalisation), in float32."""

    def __init__(self, dim: int, eps: float, with_scale: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if with_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps)
        return (normed if self.weight is None else normed * self.weight.float()).to(x.dtype)


class Gemma4Attention(nn.Module):
    def __init__(self, cfg: Gemma4Config, is_global: bool):
        super().__init__()
        self.heads = cfg.heads
        self.kv_heads = cfg.global_kv_heads if is_global else cfg.kv_heads
        self.head_dim = cfg.global_head_dim if is_global else cfg.head_dim
        kv_out = self.kv_heads * self.head_dim
        self.q_proj = nn.Linear(cfg.hidden, cfg.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden, kv_out, bias=False)
        self.v_proj = None if is_global and cfg.k_eq_v else nn.Linear(cfg.hidden, kv_out, bias=False)
        self.o_proj = nn.Linear(cfg.heads * self.head_dim, cfg.hidden, bias=False)
        self.q_norm = Gemma4RMSNorm(self.head_dim, cfg.eps)
        self.k_norm = Gemma4RMSNorm(self.head_dim, cfg.eps)
        self.v_norm = Gemma4RMSNorm(self.head_dim, cfg.eps, with_scale=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (-1, self.head_dim)).transpose(1, 2)

        q, k = heads(self.q_proj(x)), heads(self.k_proj(x))
        v = k if self.v_proj is None else heads(self.v_proj(x))
        cos, sin = (t.to(x.dtype) for t in rope)
        q = apply_half_rope(self.q_norm(q), cos, sin)
        k = apply_half_rope(self.k_norm(k), cos, sin)
        v = self.v_norm(v)
        groups = self.heads // self.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = attention(q, k, v, mask=mask, scale=1.0)
        return self.o_proj(out.transpose(1, 2).flatten(2))


class Gemma4DecoderLayer(nn.Module):
    def __init__(self, cfg: Gemma4Config, is_global: bool):
        super().__init__()
        self.self_attn = Gemma4Attention(cfg, is_global)
        self.mlp = Gemma3MLP(cfg)  # the same gated-GELU feed-forward, key for key
        self.input_layernorm = Gemma4RMSNorm(cfg.hidden, cfg.eps)
        self.post_attention_layernorm = Gemma4RMSNorm(cfg.hidden, cfg.eps)
        self.pre_feedforward_layernorm = Gemma4RMSNorm(cfg.hidden, cfg.eps)
        self.post_feedforward_layernorm = Gemma4RMSNorm(cfg.hidden, cfg.eps)
        self.layer_scalar = nn.Parameter(torch.ones(1), requires_grad=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), rope, mask))
        x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        return x * self.layer_scalar.to(x.dtype)


def rope_tables(cfg: Gemma4Config, length: int, device: torch.device, is_global: bool) -> tuple[torch.Tensor, ...]:
    """float32 `(cos, sin)` `[length, head_dim // 2]`; global layers rotate only their first angle pairs."""
    head_dim = cfg.global_head_dim if is_global else cfg.head_dim
    theta = cfg.rope_global_theta if is_global else cfg.rope_local_theta
    rotated = int(cfg.global_partial_rotary * head_dim // 2) if is_global else head_dim // 2
    inv_freq = torch.zeros(head_dim // 2, dtype=torch.float32, device=device)
    exponents = torch.arange(0, 2 * rotated, 2, dtype=torch.float32, device=device) / head_dim
    inv_freq[:rotated] = 1.0 / theta ** exponents
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos(), angles.sin()


class Gemma4TextModel(nn.Module):
    """`(input_ids [B, T], attention_mask [B, T]) -> layers + 1` hidden states `[B, T, hidden]` (Hugging Face's
    `output_hidden_states` convention: the scaled embedding, each layer's output, the last one after the norm)."""

    def __init__(self, cfg: Gemma4Config):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList([Gemma4DecoderLayer(cfg, g) for g in cfg.global_layers])
        self.norm = Gemma4RMSNorm(cfg.hidden, cfg.eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        return hidden_states(self, input_ids, attention_mask, rope_tables, list(self.cfg.global_layers))
