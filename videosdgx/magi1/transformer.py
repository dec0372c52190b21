"""MAGI-1 DiT (magi1.md §3): block-causal chunk attention with a cache of clean chunks, GQA, learned-band RoPE,
per-chunk gates, sandwich norms with the +1 convention. Module names are the official checkpoint keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.magi1.cache import ChunkKVCache
from videosdgx.magi1.config import INTERLEAVE_GROUPS, MagiDiTConfig
from videosdgx.magi1.embeddings import LearnedRope, TimestepEmbedder, apply_half_rope
from videosdgx.magi1.precision import keep_float32
from videosdgx.runtime.attention import ranged_attention
from videosdgx.runtime.quantized_linear import StaticInputFp8Linear, dense_weight


class LayerNorm1p(nn.LayerNorm):
    """LayerNorm whose stored weight is zero-centred (applied as `weight + 1`); runs in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight.to(x.dtype) + 1, self.bias.to(x.dtype), self.eps)


@dataclass
class ChunkLayout:
    """What one forward sees: `chunks` input chunks of `tokens` tokens, the first at absolute chunk `first`.

    `kv_ranges[j]` is the absolute chunk range `[start, end)` chunk j attends to (itself included). The cache
    supplies chunks before `first`; the leading `cache_chunks` input chunks are written to it.
    """

    chunks: int
    tokens: int
    first: int
    kv_ranges: Sequence[tuple[int, int]]
    cache: ChunkKVCache | None = None
    cache_chunks: int = 0

    @property
    def oldest(self) -> int:
        """The oldest chunk any input chunk reads (cached chunks from here on are read)."""
        return min(self.first, *(start for start, _ in self.kv_ranges))

    def key_ranges(self) -> list[tuple[int, int]]:
        return [((s - self.oldest) * self.tokens, (e - self.oldest) * self.tokens) for s, e in self.kv_ranges]

    def query_ranges(self) -> list[tuple[int, int]]:
        return [(j * self.tokens, (j + 1) * self.tokens) for j in range(self.chunks)]


def _fp8_linear(layer: nn.Linear, smooth: bool) -> StaticInputFp8Linear:
    return StaticInputFp8Linear(layer.in_features, layer.out_features, smooth, device=layer.weight.device)


def use_fp8_storage(layer: "TransformerLayer") -> None:
    """The fp8 release's layout of one layer: q/qx/k/v and fc1 per-tensor, linear_proj and fc2 smoothed."""
    qkv = layer.self_attention.linear_qkv
    for name in ("q", "qx", "k", "v"):
        setattr(qkv, name, _fp8_linear(getattr(qkv, name), smooth=False))
    layer.mlp.linear_fc1 = _fp8_linear(layer.mlp.linear_fc1, smooth=False)
    layer.mlp.linear_fc2 = _fp8_linear(layer.mlp.linear_fc2, smooth=True)
    layer.self_attention.linear_proj = _fp8_linear(layer.self_attention.linear_proj, smooth=True)


class LinearQKV(nn.Module):
    def __init__(self, dim: int, q_dim: int, kv_dim: int, eps: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.q = nn.Linear(dim, q_dim, bias=False)
        self.qx = nn.Linear(dim, q_dim, bias=False)
        self.k = nn.Linear(dim, kv_dim, bias=False)
        self.v = nn.Linear(dim, kv_dim, bias=False)


class SelfCrossAttention(nn.Module):
    """Self-attention over chunks (with cache) and cross-attention to each chunk's caption, side by side."""

    def __init__(self, cfg: MagiDiTConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        hd, q_dim, kv_dim = cfg.head_dim, cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
        self.linear_qkv = LinearQKV(cfg.dim, q_dim, kv_dim, cfg.eps)
        self.linear_kv_xattn = nn.Linear(cfg.dim, 2 * kv_dim, bias=False)
        self.linear_proj = nn.Linear(2 * q_dim, cfg.dim, bias=False)
        self.q_layernorm = keep_float32(LayerNorm1p(hd, eps=cfg.eps))
        self.k_layernorm = keep_float32(LayerNorm1p(hd, eps=cfg.eps))
        self.q_layernorm_xattn = LayerNorm1p(hd, eps=cfg.eps)
        self.k_layernorm_xattn = LayerNorm1p(hd, eps=cfg.eps)

    def _rotated(self, x: torch.Tensor, norm: nn.Module, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x.unflatten(-1, (-1, self.cfg.head_dim))
        return apply_half_rope(norm(x.float()), *rope).to(x.dtype)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], captions: torch.Tensor,
                caption_ranges: list[tuple[int, int]], layout: ChunkLayout) -> torch.Tensor:
        m = self.linear_qkv.layer_norm(x)
        a = self._self_attention(m, rope, layout)
        ax = self._cross_attention(m, captions, caption_ranges, layout)
        del m
        # concat(self, cross) with the fixed interleave "(n g d) -> (g n d)", written in place
        batch, tokens, _ = x.shape
        fp8 = isinstance(self.linear_proj, StaticInputFp8Linear)  # the fp8 release runs it quantised
        dtype = torch.promote_types(a.dtype, ax.dtype) if fp8 else torch.float32
        out = torch.empty(batch, tokens, INTERLEAVE_GROUPS, 2, a.shape[1] * a.shape[3] // INTERLEAVE_GROUPS,
                          dtype=dtype, device=x.device)
        out[:, :, :, 0] = a.transpose(1, 2).reshape(out.shape[:3] + out.shape[4:])
        del a
        out[:, :, :, 1] = ax.transpose(1, 2).reshape(out.shape[:3] + out.shape[4:])
        del ax
        out = out.flatten(2)
        if fp8:
            return self.linear_proj(out).float()
        return F.linear(out, dense_weight(self.linear_proj, torch.float32))

    def _self_attention(self, m: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                        layout: ChunkLayout) -> torch.Tensor:
        """Attention over the chunks (and the cached ones they read): `[B, heads, tokens, hd]`."""
        q = self._rotated(self.linear_qkv.q(m), self.q_layernorm, rope).transpose(1, 2)
        k = self._rotated(self.linear_qkv.k(m), self.k_layernorm, rope)
        kv = self._keys_values(k, self.linear_qkv.v(m).unflatten(-1, (-1, self.cfg.head_dim)), layout)
        k, v = kv.chunk(2, dim=-1)
        return ranged_attention(q, k, v, layout.query_ranges(), layout.key_ranges())

    def _keys_values(self, k: torch.Tensor, v: torch.Tensor, layout: ChunkLayout) -> torch.Tensor:
        """`[B, G, read + new tokens, 2*hd]` in one buffer: the cached chunks the layout reads, then the keys and
        values `[B, tokens, G, hd]` of the input, whose leading `cache_chunks` chunks are written to the cache."""
        past = [] if layout.cache is None else layout.cache.read(self.layer, layout.oldest, layout.first)
        batch, tokens, groups, hd = k.shape
        start = sum(p.shape[2] for p in past)
        kv = k.new_empty(batch, groups, start + tokens, 2 * hd)
        end = 0
        for part in past:
            kv[:, :, end: end + part.shape[2]] = part
            end += part.shape[2]
        kv[:, :, start:, :hd] = k.transpose(1, 2)
        kv[:, :, start:, hd:] = v.transpose(1, 2)
        if layout.cache is not None and layout.cache_chunks:
            written = kv[:, :, start: start + layout.cache_chunks * layout.tokens]
            layout.cache.write(self.layer, layout.first, written, layout.cache_chunks)
        return kv

    def _cross_attention(self, m: torch.Tensor, captions: torch.Tensor, caption_ranges: list[tuple[int, int]],
                         layout: ChunkLayout) -> torch.Tensor:
        """Each chunk's queries attend to its own caption tokens: `[1, heads, B*tokens, hd]`."""
        batch, tokens, _ = m.shape
        hd = self.cfg.head_dim
        qx = self.q_layernorm_xattn(self.linear_qkv.qx(m).unflatten(-1, (-1, hd)))
        kvx = self.linear_kv_xattn(captions).unflatten(-1, (-1, 2 * hd))
        kx, vx = self.k_layernorm_xattn(kvx[..., :hd]), kvx[..., hd:]
        dtype = torch.promote_types(qx.dtype, kvx.dtype)  # fp8 layers give bf16 queries in a float32 model
        qx, kx, vx = qx.to(dtype), kx.to(dtype), vx.to(dtype)
        qx = qx.reshape(1, batch * tokens, *qx.shape[2:]).transpose(1, 2)
        q_ranges = [(b * tokens + q0, b * tokens + q1) for b in range(batch) for q0, q1 in layout.query_ranges()]
        return ranged_attention(qx, kx.transpose(0, 1)[None], vx.transpose(0, 1)[None], q_ranges, caption_ranges)


class MLP(nn.Module):
    def __init__(self, cfg: MagiDiTConfig):
        super().__init__()
        self.gated = cfg.gated_mlp
        self.layer_norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.linear_fc1 = nn.Linear(cfg.dim, cfg.ffn_dim * (2 if cfg.gated_mlp else 1), bias=False)
        self.linear_fc2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear_fc1(self.layer_norm(x))
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            return self.linear_fc2(F.silu(gate, inplace=True).mul_(up))
        return self.linear_fc2(torch.ops.aten.gelu_(h))  # in place: the widest activation exists once


class AdaModulate(nn.Module):
    def __init__(self, cfg: MagiDiTConfig):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(cfg.cond_dim, 2 * cfg.dim))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(F.silu(c)).float()).to(c.dtype)


class TransformerLayer(nn.Module):
    def __init__(self, cfg: MagiDiTConfig, layer: int):
        super().__init__()
        self.ada_modulate_layer = AdaModulate(cfg)
        self.self_attention = SelfCrossAttention(cfg, layer)
        self.self_attn_post_norm = keep_float32(LayerNorm1p(cfg.dim, eps=cfg.eps))
        self.mlp = MLP(cfg)
        self.mlp_post_norm = keep_float32(LayerNorm1p(cfg.dim, eps=cfg.eps))

    def forward(self, x, condition, rope, captions, caption_ranges, layout: ChunkLayout) -> torch.Tensor:
        gate_msa, gate_mlp = self.ada_modulate_layer(condition).float()[:, :, None].chunk(2, -1)  # [B, n, 1, D]
        h = self.self_attention(x, rope, captions, caption_ranges, layout)
        x = self.self_attn_post_norm(_gated(h, gate_msa)).add_(x.float()).to(x.dtype)
        h = self.mlp(x).float()
        return self.mlp_post_norm(_gated(h, gate_mlp)).add_(x.float()).to(x.dtype)


def _gated(h: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """`h [B, n*tokens, D]` (a float32 temporary, scaled in place) times its chunk's gate `[B, n, 1, D]`."""
    return h.unflatten(1, (gate.shape[1], -1)).mul_(gate).flatten(1, 2)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: MagiDiTConfig):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg, i) for i in range(cfg.layers))
        for i in cfg.fp8_layers:
            use_fp8_storage(self.layers[i])
        self.final_layernorm = keep_float32(LayerNorm1p(cfg.dim, eps=cfg.eps))


class CaptionEmbedder(nn.Module):
    def __init__(self, cfg: MagiDiTConfig):
        super().__init__()
        self.y_proj_xattn = nn.Sequential(nn.Linear(cfg.caption_dim, cfg.dim), nn.SiLU())
        self.y_proj_adaln = nn.Sequential(nn.Linear(cfg.caption_dim, cfg.cond_dim))
        self.null_caption_embedding = nn.Parameter(torch.zeros(cfg.caption_length, cfg.caption_dim))
        keep_float32(self)


class FinalLinear(nn.Module):
    def __init__(self, cfg: MagiDiTConfig):
        super().__init__()
        self.linear = nn.Linear(cfg.dim, cfg.patch * cfg.patch * cfg.t_patch * cfg.out_channels, bias=False)
        keep_float32(self)


class MagiDiT(nn.Module):
    """The MAGI-1 velocity model over a run of latent chunks (t = 0 noise, t = 1 clean)."""

    def __init__(self, cfg: MagiDiTConfig):
        super().__init__()
        self.cfg = cfg
        p, pt = cfg.patch, cfg.t_patch
        self.x_embedder = keep_float32(nn.Conv3d(cfg.in_channels, cfg.dim, (pt, p, p), (pt, p, p), bias=False))
        self.t_embedder = TimestepEmbedder(cfg.cond_dim)
        self.y_embedder = CaptionEmbedder(cfg)
        self.rope = LearnedRope(cfg.head_dim)
        self.videodit_blocks = TransformerBlock(cfg)
        self.final_linear = FinalLinear(cfg)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (that of the plain LayerNorms: never quantised, never kept in float32)."""
        return self.videodit_blocks.layers[0].mlp.layer_norm.weight.dtype

    def condition(self, t: torch.Tensor, drop_caption: bool, distill_dt: float | None) -> torch.Tensor:
        """Per-chunk condition `[B, n, cond_dim]`: timestep (+ distill step size) + the adaLN caption token."""
        emb = self.t_embedder(t.flatten())
        if distill_dt is not None:
            emb = emb + self.t_embedder(torch.full_like(t.flatten(), distill_dt))
        token = self.y_embedder.null_caption_embedding[-1 if drop_caption else -2]
        return emb.unflatten(0, t.shape) + self.y_embedder.y_proj_adaln(token.float())

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        captions: torch.Tensor,
        caption_mask: torch.Tensor,
        layout: ChunkLayout,
        drop_caption: bool = False,
        distill_dt: float | None = None,
    ) -> torch.Tensor:
        """Velocity for `x [B, 16, n*cw, h, w]` at per-chunk times `t [B, n]`.

        `captions [B, n, L, C]` with `caption_mask [B, n, L]` (True = token used); chunk j cross-attends only its
        own valid tokens. `drop_caption` selects the "dropped" adaLN token (the null-text passes of guidance);
        `distill_dt` is the step-size input of the distilled models.
        """
        cfg, dtype = self.cfg, self.dtype
        batch, _, frames, height, width = x.shape
        x = x * cfg.x_rescale
        if cfg.half_channel_vae:
            x = torch.cat([x, x], dim=1)
        x = self.x_embedder(x.float())
        _, _, f, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2).to(dtype)
        chunk_frames = f // layout.chunks
        rope = self.rope(f + chunk_frames * layout.first, h, w, keep_last=f * h * w)

        condition = self.condition(t, drop_caption, distill_dt).to(dtype)
        mask = caption_mask.bool().flatten(0, 1)
        y = self.y_embedder.y_proj_xattn(captions.flatten(0, 1).float())[mask].to(dtype)
        ends = mask.sum(-1).cumsum(0).tolist()
        caption_ranges = list(zip([0] + ends[:-1], ends))

        for layer in self.videodit_blocks.layers:
            tokens = layer(tokens, condition, rope, y, caption_ranges, layout)
        out = self.final_linear.linear(self.videodit_blocks.final_layernorm(tokens.float()))
        out = rearrange(out, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=f, h=h, w=w,
                        pt=cfg.t_patch, ph=cfg.patch, pw=cfg.patch)
        if cfg.half_channel_vae:
            out = out[:, : cfg.out_channels // 2]
        return out / cfg.x_rescale
