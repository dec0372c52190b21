"""The single attention entry point every model calls."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Range = tuple[int, int]


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
    `[batch, heads, q_tokens, k_tokens]`. Keys and values may have fewer heads than the queries (grouped-query
    attention: query head `i` reads key head `i // (q_heads // kv_heads)`). Returns `[batch, heads, q_tokens,
    head_dim]`.
    """
    gqa = k.shape[-3] != q.shape[-3]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=gqa)


def ranged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_ranges: Sequence[Range],
    k_ranges: Sequence[Range],
    scale: float | None = None,
) -> torch.Tensor:
    """Variable-length attention: query tokens `q_ranges[i]` attend to key tokens `k_ranges[i]` only.

    Tensors are `[batch, heads, tokens, head_dim]` (grouped-query heads allowed). This is how a sequence of packed
    segments (one per chunk, caption or clip) or a query block reading a key-value cache of earlier tokens is
    attended without a dense mask. Query tokens outside every range, and ranges with no keys, give zeros.
    """
    if len(q_ranges) == 1 and tuple(q_ranges[0]) == (0, q.shape[-2]) and k_ranges[0][1] > k_ranges[0][0]:
        (k0, k1), = k_ranges  # one range over every query: no zero-filled buffer, no copy
        return attention(q, k[:, :, k0:k1], v[:, :, k0:k1], scale=scale)
    out = torch.zeros_like(q)  # q's memory layout (e.g. [batch, tokens, heads, dim] underneath), not always contiguous
    for (q0, q1), (k0, k1) in zip(q_ranges, k_ranges):
        if q1 > q0 and k1 > k0:
            out[:, :, q0:q1] = attention(q[:, :, q0:q1], k[:, :, k0:k1], v[:, :, k0:k1], scale=scale)
    return out
