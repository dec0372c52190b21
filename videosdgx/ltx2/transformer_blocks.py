"""Building blocks of the LTX-2 AV DiT; attribute names follow the official checkpoint keys.

The residual streams and modulations are float32; every Linear runs in its weights' compute dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from videosdgx.layers.embeddings import timestep_embedding
from videosdgx.layers.norms import RMSNorm
from videosdgx.layers.rope import RopeFreqs
from videosdgx.ltx2.rope import apply_ltx_rope
from videosdgx.runtime.attention import attention
from videosdgx.runtime.quantized_linear import compute_dtype


def rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Weightless RMS norm in float32."""
    return torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=eps)


def modulate(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    return rms(x, eps) * (1 + scale) + shift


def table_values(table: torch.Tensor, emb: torch.Tensor, rows: slice = slice(None)) -> list[torch.Tensor]:
    """`rows` of `table [R, D]` plus the same rows of the embedding `emb [B, N, R * D]`: tensors `[B, N, D]`."""
    values = table[rows].float() + emb.unflatten(-1, (table.shape[0], -1))[:, :, rows]
    return list(values.unbind(dim=2))


class Attention(nn.Module):
    """Multi-head attention with RMS-normalised q / k over the full width, optional RoPE on q and k (separate
    tables for cross-modal attention), optional per-head output gates `2 * sigmoid(to_gate_logits(x))` (2.3)."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None,
                 eps: float = 1e-6, rope_type: str = "split", gated: bool = False):
        super().__init__()
        inner = heads * head_dim
        context_dim = context_dim or query_dim
        self.heads, self.rope_type = heads, rope_type
        self.q_norm = RMSNorm(inner, eps)
        self.k_norm = RMSNorm(inner, eps)
        self.to_q = nn.Linear(query_dim, inner)
        self.to_k = nn.Linear(context_dim, inner)
        self.to_v = nn.Linear(context_dim, inner)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim))
        self.to_gate_logits = nn.Linear(query_dim, heads) if gated else None

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        pe: RopeFreqs | None = None,
        k_pe: RopeFreqs | None = None,
        mask: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`keep [B, 1, 1]` (spatio-temporal guidance): 1 = attention output, 0 = the value projection instead."""
        dtype = compute_dtype(self.to_q)
        x = x.to(dtype)
        context = x if context is None else context.to(dtype)
        v = self.to_v(context)
        if keep is not None and not keep.any():
            out = v
        else:
            q, k = self.q_norm(self.to_q(x)), self.k_norm(self.to_k(context))
            if pe is not None:
                q = apply_ltx_rope(q, pe, self.rope_type)
                k = apply_ltx_rope(k, pe if k_pe is None else k_pe, self.rope_type)
            heads = [rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v)]
            out = rearrange(attention(*heads, mask=mask), "b h l d -> b l (h d)")
            if keep is not None:
                out = torch.lerp(v, out, keep.to(out.dtype))
        if self.to_gate_logits is not None:
            gates = 2.0 * torch.sigmoid(self.to_gate_logits(x).float())
            out = (out.float().unflatten(-1, (self.heads, -1)) * gates[..., None]).flatten(-2).to(out.dtype)
        return self.to_out(out)


class GeluProjection(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """`net.0.proj` (x4, GELU-tanh) then `net.2`."""

    def __init__(self, dim: int, bias: bool = True):
        super().__init__()
        self.net = nn.Sequential(GeluProjection(dim, 4 * dim, bias), nn.Identity(), nn.Linear(4 * dim, dim, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(compute_dtype(self.net[2])))


class TextProjection(nn.Module):
    """Caption projection of LTX-2 19B: `linear_1`, GELU-tanh, `linear_2`."""

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(compute_dtype(self.linear_1))
        return self.linear_2(nn.functional.gelu(self.linear_1(x), approximate="tanh"))


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.linear_1 = nn.Linear(freq_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)


class TimestepEmbedding(nn.Module):
    """Holds `timestep_embedder` (the checkpoint nests it as `emb.timestep_embedder`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(dim)


class AdaLayerNormSingle(nn.Module):
    """Timestep (already x1000) -> sinusoid [cos, sin] -> MLP = `embedded`; `linear(silu(embedded))` = `coef * D`
    modulation values."""

    def __init__(self, dim: int, coefficients: int):
        super().__init__()
        self.emb = TimestepEmbedding(dim)
        self.linear = nn.Linear(dim, coefficients * dim)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`t [B, N]` -> (modulation `[B, N, coef * D]`, embedded `[B, N, D]`), float32."""
        mlp = self.emb.timestep_embedder
        dtype = compute_dtype(mlp.linear_1)
        sinusoid = timestep_embedding(t, mlp.linear_1.in_features, flip_sin_to_cos=True, compute_dtype=torch.float32)
        embedded = mlp.linear_2(nn.functional.silu(mlp.linear_1(sinusoid.to(dtype))))
        return self.linear(nn.functional.silu(embedded)).float(), embedded.float()


@dataclass
class StreamArgs:
    """Per-modality inputs of every block (one of video / audio)."""

    timesteps: torch.Tensor  # [B, 1 or T, rows * D] AdaLN values
    context: torch.Tensor  # text context [B, L, D]
    context_mask: torch.Tensor | None
    pe: RopeFreqs
    cross_pe: RopeFreqs
    cross_scale_shift: torch.Tensor  # [B, 1 or T, 4 * D]
    cross_gate: torch.Tensor  # [B, 1 or T, D]
    prompt: torch.Tensor | None = None  # 2.3 prompt AdaLN [B, 1, 2 * D]


class AVBlock(nn.Module):
    """Video and audio self-attention, text cross-attention, audio<->video cross-attention, feed-forwards."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, audio_dim: int, audio_heads: int,
                 audio_head_dim: int, audio_context_dim: int, eps: float, rope_type: str, gated: bool,
                 cross_attention_adaln: bool, ff_bias: bool = True, audio_ff_bias: bool = True):
        super().__init__()
        self.eps = eps
        self.cross_attention_adaln = cross_attention_adaln

        def attn(query_dim, n, d, ctx=None):
            return Attention(query_dim, n, d, ctx, eps, rope_type, gated)

        self.attn1 = attn(dim, heads, head_dim)
        self.attn2 = attn(dim, heads, head_dim, context_dim)
        self.ff = FeedForward(dim, ff_bias)
        self.audio_attn1 = attn(audio_dim, audio_heads, audio_head_dim)
        self.audio_attn2 = attn(audio_dim, audio_heads, audio_head_dim, audio_context_dim)
        self.audio_ff = FeedForward(audio_dim, audio_ff_bias)
        self.audio_to_video_attn = attn(dim, audio_heads, audio_head_dim, audio_dim)
        self.video_to_audio_attn = attn(audio_dim, audio_heads, audio_head_dim, dim)
        rows = 9 if cross_attention_adaln else 6
        self.scale_shift_table = nn.Parameter(torch.empty(rows, dim))
        self.audio_scale_shift_table = nn.Parameter(torch.empty(rows, audio_dim))
        self.scale_shift_table_a2v_ca_video = nn.Parameter(torch.empty(5, dim))
        self.scale_shift_table_a2v_ca_audio = nn.Parameter(torch.empty(5, audio_dim))
        if cross_attention_adaln:
            self.prompt_scale_shift_table = nn.Parameter(torch.empty(2, dim))
            self.audio_prompt_scale_shift_table = nn.Parameter(torch.empty(2, audio_dim))

    def _self_and_text(self, x: torch.Tensor, s: StreamArgs, table: torch.Tensor, attn1: Attention,
                       attn2: Attention, prompt_table: torch.Tensor | None, keep: torch.Tensor | None) -> torch.Tensor:
        mod = table_values(table, s.timesteps, slice(0, 3))
        x = x + attn1(modulate(x, mod[1], mod[0], self.eps), pe=s.pe, keep=keep).float() * mod[2]
        if not self.cross_attention_adaln:
            return x + attn2(rms(x, self.eps), s.context, mask=s.context_mask).float()
        shift_q, scale_q, gate_q = table_values(table, s.timesteps, slice(6, 9))
        prompt = prompt_table.float()[None, None]
        if s.prompt is not None:
            prompt = prompt + s.prompt.unflatten(-1, (2, -1))
        shift_kv, scale_kv = prompt.unbind(dim=2)
        context = s.context.float() * (1 + scale_kv) + shift_kv
        query = rms(x, self.eps) * (1 + scale_q) + shift_q
        return x + attn2(query, context, mask=s.context_mask).float() * gate_q

    def forward(self, vx: torch.Tensor, ax: torch.Tensor, video: StreamArgs, audio: StreamArgs,
                stg_keep: torch.Tensor | None = None, av_keep: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """`stg_keep [B, 1, 1]`: perturb both self-attentions of this block (0 = perturbed sample);
        `av_keep [B, 1, 1]`: multiplies both audio<->video cross-attention outputs (0 = modality isolated)."""
        vx = self._self_and_text(vx, video, self.scale_shift_table, self.attn1, self.attn2,
                                 getattr(self, "prompt_scale_shift_table", None), stg_keep)
        ax = self._self_and_text(ax, audio, self.audio_scale_shift_table, self.audio_attn1, self.audio_attn2,
                                 getattr(self, "audio_prompt_scale_shift_table", None), stg_keep)

        if av_keep is None or av_keep.any():
            v_ss = table_values(self.scale_shift_table_a2v_ca_video[:4], video.cross_scale_shift)
            a_ss = table_values(self.scale_shift_table_a2v_ca_audio[:4], audio.cross_scale_shift)
            (a2v_gate,) = table_values(self.scale_shift_table_a2v_ca_video[4:], video.cross_gate)
            (v2a_gate,) = table_values(self.scale_shift_table_a2v_ca_audio[4:], audio.cross_gate)
            vn, an = rms(vx, self.eps), rms(ax, self.eps)
            a2v = self.audio_to_video_attn(vn * (1 + v_ss[0]) + v_ss[1], an * (1 + a_ss[0]) + a_ss[1],
                                           pe=video.cross_pe, k_pe=audio.cross_pe).float() * a2v_gate
            v2a = self.video_to_audio_attn(an * (1 + a_ss[2]) + a_ss[3], vn * (1 + v_ss[2]) + v_ss[3],
                                           pe=audio.cross_pe, k_pe=video.cross_pe).float() * v2a_gate
            if av_keep is not None:
                a2v, v2a = a2v * av_keep, v2a * av_keep
            vx, ax = vx + a2v, ax + v2a

        mod = table_values(self.scale_shift_table, video.timesteps, slice(3, 6))
        vx = vx + self.ff(modulate(vx, mod[1], mod[0], self.eps)).float() * mod[2]
        mod = table_values(self.audio_scale_shift_table, audio.timesteps, slice(3, 6))
        ax = ax + self.audio_ff(modulate(ax, mod[1], mod[0], self.eps)).float() * mod[2]
        return vx, ax
