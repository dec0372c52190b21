"""The single attention entry point every model calls."""

import torch
import torch.nn.functional as F


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention on `[batch, heads, tokens, head_dim]` tensors.

    `mask` is a boolean (True = attend) or additive float mask broadcastable to
    `[batch, heads, q_tokens, k_tokens]`. Returns `[batch, heads, q_tokens, head_dim]`.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)
