"""Building blocks of the Wan DiT; attribute names follow the official checkpoint keys."""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.layers.norms import RMSNorm
from videosdgx.layers.rope import RopeFreqs, apply_rope
from videosdgx.runtime.attention import attention
from videosdgx.runtime.quantized_linear import compute_dtype, dense_weight


def fp32_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` computed in float32 whatever the weight's storage (the reference runs these under fp32 autocast)."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), dense_weight(layer, torch.float32), bias)


def _grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """`[B, N, D]` -> `[B, groups, N / groups, D]`: consecutive tokens that share one modulation."""
    return x.unflatten(1, (groups, -1))


class LayerNormFP32(nn.LayerNorm):
    """LayerNorm computed in float32; returns float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RMS-normalised queries/keys (over the full width) and RoPE."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b l (h d) -> b h l d", h=self.num_heads)

    def forward(self, x: torch.Tensor, freqs: RopeFreqs) -> torch.Tensor:
        x = x.to(compute_dtype(self.q))
        q = apply_rope(self.split_heads(self.norm_q(self.q(x))), freqs)
        k = apply_rope(self.split_heads(self.norm_k(self.k(x))), freqs)
        out = attention(q, k, self.split_heads(self.v(x)))
        return self.o(rearrange(out, "b h l d -> b l (h d)"))


class CrossAttention(SelfAttention):
    """Attention of the video tokens over the text tokens and, for Wan2.1 I2V/FLF2V, over CLIP image tokens.

    The two head-merged results are summed before the shared output projection.
    """

    def __init__(self, dim: int, num_heads: int, eps: float, image_branch: bool):
        super().__init__(dim, num_heads, eps)
        if image_branch:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, context: torch.Tensor, context_img: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x.to(compute_dtype(self.q))
        q = self.split_heads(self.norm_q(self.q(x)))
        k = self.split_heads(self.norm_k(self.k(context)))
        out = attention(q, k, self.split_heads(self.v(context)))
        if context_img is not None:
            k_img = self.split_heads(self.norm_k_img(self.k_img(context_img)))
            out = out + attention(q, k_img, self.split_heads(self.v_img(context_img)))
        return self.o(rearrange(out, "b h l d -> b l (h d)"))


class WanBlock(nn.Module):
    """Modulated self-attention, cross-attention and feed-forward; the residual stream stays float32.

    `norm3` is the affine pre-norm of the cross-attention, `norm1`/`norm2` the parameter-free pre-norms of the
    self-attention and the FFN (the official naming).
    """

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float, image_branch: bool):
        super().__init__()
        self.norm1 = LayerNormFP32(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, num_heads, eps)
        self.norm3 = LayerNormFP32(dim, eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, num_heads, eps, image_branch)
        self.norm2 = LayerNormFP32(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        context: torch.Tensor,
        context_img: torch.Tensor | None,
        freqs: RopeFreqs,
        **extra: torch.Tensor,
    ) -> torch.Tensor:
        """`x [B, N, D]` float32, `e0 [B, G, 6, D]` float32 time projection of G groups of consecutive tokens
        (1, one per frame, or N) -> `[B, N, D]` float32. `extra` goes to `after_cross_attention`."""
        groups = e0.shape[1]
        modulation = (self.modulation.float() + e0).unsqueeze(2)
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = modulation.unbind(3)
        h = torch.addcmul(shift_sa, _grouped(self.norm1(x), groups), 1 + scale_sa).flatten(1, 2)
        attn = self.self_attn(h, freqs).float()
        x = torch.addcmul(_grouped(x, groups), _grouped(attn, groups), gate_sa).flatten(1, 2)
        x = x + self.cross_attn(self.norm3(x), context, context_img).float()
        x = self.after_cross_attention(x, **extra)
        h = torch.addcmul(shift_ff, _grouped(self.norm2(x), groups), 1 + scale_ff).flatten(1, 2)
        ffn = self.ffn(h.to(compute_dtype(self.ffn[0]))).float()
        return torch.addcmul(_grouped(x, groups), _grouped(ffn, groups), gate_ff).flatten(1, 2)


    def after_cross_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Hook for blocks that attend to more conditions between cross-attention and FFN (SkyReels V3 audio)."""
        return x


class Head(nn.Module):
    """Final modulated norm and projection to `C_out * prod(patch)` per token, in float32."""

    def __init__(self, dim: int, out_features: int, eps: float):
        super().__init__()
        self.norm = LayerNormFP32(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """`x [B, N, D]`, `e [B, G, D]` time embedding of G token groups (before the projection) -> float32
        `[B, N, out]`."""
        shift, scale = (self.modulation.float() + e.unsqueeze(2)).unsqueeze(2).unbind(3)
        return fp32_linear(self.head, (_grouped(self.norm(x), e.shape[1]) * (1 + scale) + shift).flatten(1, 2))


class ImageEmbedding(nn.Module):
    """CLIP image tokens -> context tokens: LayerNorm, Linear, GELU, Linear, LayerNorm (`img_emb.proj`).

    FLF2V adds a learned position embedding `emb_pos` over the two images' concatenated tokens first.
    """

    def __init__(self, image_dim: int, dim: int, num_position_tokens: int | None):
        super().__init__()
        self.proj = nn.Sequential(
            LayerNormFP32(image_dim),
            nn.Linear(image_dim, image_dim),
            nn.GELU(),
            nn.Linear(image_dim, dim),
            LayerNormFP32(dim),
        )
        if num_position_tokens is not None:
            self.emb_pos = nn.Parameter(torch.zeros(1, num_position_tokens, image_dim))

    def forward(self, clip_fea: torch.Tensor) -> torch.Tensor:
        """`[B, tokens, image_dim]` -> `[B, tokens, dim]` in the weights' dtype."""
        norm_in, fc1, act, fc2, norm_out = self.proj
        if hasattr(self, "emb_pos"):
            clip_fea = clip_fea.float() + self.emb_pos.float()
        h = fc2(act(fc1(norm_in(clip_fea).to(compute_dtype(fc1)))))
        return norm_out(h).to(compute_dtype(fc2))
