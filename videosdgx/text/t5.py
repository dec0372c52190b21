"""T5 / UMT5 text encoder (encoder stack only), parameter names as in Hugging Face and ComfyUI files.

UMT5-XXL (Wan) gives every block its own relative position bias table; T5 v1.1 XXL (MAGI-1) computes the bias in
block 0 and shares it. Otherwise the two are the same: pre-RMSNorm blocks, attention without 1/sqrt(d) scaling,
gated GELU(tanh) feed-forward, no biases. In float16 the residual stream is clamped below the float16 maximum
after every sub-layer when it overflowed, as Hugging Face and the Wan reference do.
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.layers.norms import RMSNorm
from videosdgx.runtime.attention import attention
from videosdgx.runtime.errors import CheckpointError


@dataclass(frozen=True)
class T5Config:
    """Sizes of a T5 encoder. `per_layer_position_bias`: UMT5 True, T5 v1.1 False."""

    vocab: int
    d_model: int
    d_kv: int
    heads: int
    d_ff: int
    layers: int
    buckets: int = 32
    max_distance: int = 128
    per_layer_position_bias: bool = True
    eps: float = 1e-6

    @classmethod
    def umt5_xxl(cls) -> "T5Config":
        """google/umt5-xxl encoder, the Wan 2.1 / 2.2 text encoder."""
        return cls(vocab=256384, d_model=4096, d_kv=64, heads=64, d_ff=10240, layers=24, per_layer_position_bias=True)

    @classmethod
    def t5_v1_1_xxl(cls) -> "T5Config":
        """google/t5-v1_1-xxl encoder (DeepFloyd copy), the MAGI-1 text encoder."""
        return cls(vocab=32128, d_model=4096, d_kv=64, heads=64, d_ff=10240, layers=24, per_layer_position_bias=False)


def relative_position_bucket(relative_position: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 bucket of `key_position - query_position`.

    Half the buckets hold positive offsets; in each half the first half of the buckets are exact offsets and the
    rest are log-spaced up to `max_distance`, beyond which everything shares the last bucket.
    """
    half = num_buckets // 2
    bucket = (relative_position > 0).long() * half
    distance = relative_position.abs()
    max_exact = half // 2
    log_ratio = torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(distance < max_exact, distance, large)


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(torch.float16).max - 1000
        x = x.clamp(-limit, limit)
    return x


class T5Attention(nn.Module):
    """Multi-head self-attention, unscaled, with an optional relative position bias table."""

    def __init__(self, cfg: T5Config, has_position_bias: bool):
        super().__init__()
        inner = cfg.heads * cfg.d_kv
        self.heads = cfg.heads
        self.buckets = cfg.buckets
        self.max_distance = cfg.max_distance
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.relative_attention_bias = nn.Embedding(cfg.buckets, cfg.heads) if has_position_bias else None

    def position_bias(self, length: int) -> torch.Tensor:
        """Bias `[1, heads, length, length]` from this layer's bucket table."""
        table = self.relative_attention_bias.weight
        position = torch.arange(length, device=table.device)
        bucket = relative_position_bucket(position[None, :] - position[:, None], self.buckets, self.max_distance)
        return table[bucket].permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q, k, v = (proj(x).unflatten(-1, (self.heads, -1)).transpose(1, 2) for proj in (self.q, self.k, self.v))
        out = attention(q, k, v, mask=bias, scale=1.0)
        return self.o(out.transpose(1, 2).flatten(2))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, cfg: T5Config, has_position_bias: bool):
        super().__init__()
        self.layer_norm = RMSNorm(cfg.d_model, eps=cfg.eps)
        self.SelfAttention = T5Attention(cfg, has_position_bias)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return _clamp_fp16(x + self.SelfAttention(self.layer_norm(x), bias))


class T5GatedFeedForward(nn.Module):
    """`wo(gelu_tanh(wi_0 x) * wi_1 x)`."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


class T5LayerFF(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.layer_norm = RMSNorm(cfg.d_model, eps=cfg.eps)
        self.DenseReluDense = T5GatedFeedForward(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _clamp_fp16(x + self.DenseReluDense(self.layer_norm(x)))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, has_position_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(cfg, has_position_bias), T5LayerFF(cfg)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.layer[1](self.layer[0](x, bias))


class T5Stack(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.block = nn.ModuleList(
            [T5Block(cfg, has_position_bias=cfg.per_layer_position_bias or i == 0) for i in range(cfg.layers)]
        )
        self.final_layer_norm = RMSNorm(cfg.d_model, eps=cfg.eps)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        masked_keys = attention_mask[:, None, None, :] == 0
        bias = None
        for block in self.block:
            self_attention = block.layer[0].SelfAttention
            if self_attention.relative_attention_bias is not None:
                bias = self_attention.position_bias(x.shape[1]).to(x.dtype)
                bias = bias.masked_fill(masked_keys, torch.finfo(x.dtype).min)
            x = block(x, bias)
        return self.final_layer_norm(x)


class T5Encoder(nn.Module):
    """T5 / UMT5 encoder: `(input_ids [B, L], attention_mask [B, L]) -> hidden states [B, L, d_model]`.

    Masked positions are excluded as keys only; their output rows are computed but meaningless.
    """

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab, cfg.d_model)
        self.encoder = T5Stack(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.encoder(self.shared(input_ids), attention_mask)


_BLOCK_KEY = re.compile(r"^encoder\.block\.(\d+)\.")


def config_from_shapes(shapes: Mapping[str, Sequence[int]]) -> T5Config:
    """Read a `T5Config` from the tensor shapes of a state dict in Hugging Face / ComfyUI names."""
    try:
        vocab, d_model = shapes.get("shared.weight") or shapes["encoder.embed_tokens.weight"]
        buckets, heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        inner = shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
        d_ff = shapes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0]
    except KeyError as missing:
        raise CheckpointError(
            f"This T5 text encoder file has no tensor {missing}: it is not a complete T5/UMT5 encoder. "
            "Download the text encoder again (for Wan: umt5_xxl_fp16.safetensors or umt5_xxl_fp8_e4m3fn_scaled)."
        ) from None
    layers = 1 + max(int(m.group(1)) for m in map(_BLOCK_KEY.match, shapes) if m)
    per_layer = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in shapes
    return T5Config(
        vocab=vocab,
        d_model=d_model,
        d_kv=inner // heads,
        heads=heads,
        d_ff=d_ff,
        layers=layers,
        buckets=buckets,
        per_layer_position_bias=per_layer or layers == 1,
    )
