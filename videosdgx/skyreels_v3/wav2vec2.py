"""The wav2vec 2.0 base encoder of the talking avatar (`chinese-wav2vec2-base` layout), with SkyReels' twist: the
conv features are linearly resampled to the video frame count before the transformer (skyreels_v3.md §4).

Parameter names follow the Hugging Face `Wav2Vec2Model` checkpoint keys (post-norm "base" encoder, group-norm
feature extractor, weight-normed convolutional position embedding stored as `weight_g` / `weight_v`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.runtime.attention import attention
from videosdgx.runtime.errors import CheckpointError, ConfigurationError

IGNORED_PREFIXES = ("masked_spec_embed", "quantizer.", "project_q.", "project_hid.", "lm_head.", "dropout_features")
HF_PREFIX = "wav2vec2."
CONV_INPUT_LIMIT = 1 << 22  # input elements per feature-extractor convolution call (`conv_in_chunks`)
WEIGHT_NORM = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}


@dataclass(frozen=True)
class Wav2Vec2Config:
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    conv_dims: tuple[int, ...] = (512,) * 7
    conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    position_kernel: int = 128
    position_groups: int = 16
    eps: float = 1e-5


def wav2vec2_key(key: str) -> str | None:
    """Checkpoint key -> module name (None: a pre-training head or buffer the encoder does not use)."""
    key = key.removeprefix(HF_PREFIX)
    if key.startswith(IGNORED_PREFIXES):
        return None
    for stored, name in WEIGHT_NORM.items():
        key = key.replace(stored, name)
    return key


def config_from_shapes(shapes: Mapping[str, Sequence[int]], heads: int | None = None) -> Wav2Vec2Config:
    """The architecture from module names and shapes (heads: 64-wide, as every released wav2vec 2.0)."""
    try:
        hidden = shapes["feature_projection.projection.weight"][0]
        convs = sorted(int(k.split(".")[2]) for k in shapes if k.endswith(".conv.weight") and "conv_layers" in k)
        conv = [shapes[f"feature_extractor.conv_layers.{i}.conv.weight"] for i in convs]
        position = shapes["encoder.pos_conv_embed.conv.weight_v"]
    except KeyError as missing:
        raise CheckpointError(f"This is not a wav2vec 2.0 encoder (no {missing}).") from None
    return Wav2Vec2Config(
        hidden=hidden, layers=1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("encoder.layers.")),
        heads=heads or hidden // 64, intermediate=shapes["encoder.layers.0.feed_forward.intermediate_dense.weight"][0],
        conv_dims=tuple(c[0] for c in conv), conv_kernels=tuple(c[2] for c in conv),
        conv_strides=(5,) + (2,) * (len(conv) - 1), position_kernel=position[2],
        position_groups=hidden // position[1],
    )


def conv_in_chunks(conv: nn.Conv1d, x: torch.Tensor, limit: int) -> torch.Tensor:
    """`conv(x)` in about `x.numel() / limit` calls over consecutive output frames, into one preallocated output
    (bit-identical). One call takes a workspace about as large as its input: over 10 s of audio the second layer's
    (65 MB at base width) set the forward's peak. More calls are slower, hence a limit rather than a chunk size."""
    (kernel,), (stride,) = conv.kernel_size, conv.stride
    length = (x.shape[-1] - kernel) // stride + 1
    calls = min(length, -(-x.numel() // limit))
    if calls <= 1:
        return conv(x)
    chunk = -(-length // calls)
    out = x.new_empty(x.shape[0], conv.out_channels, length)
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        out[..., start:stop] = conv(x[..., start * stride : (stop - 1) * stride + kernel])
    return out


class ConvLayer(nn.Module):
    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, group_norm: bool):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, stride=stride, bias=False)
        if group_norm:
            self.layer_norm = nn.GroupNorm(n_out, n_out, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv_in_chunks(self.conv, x, CONV_INPUT_LIMIT)
        if hasattr(self, "layer_norm"):
            x = self.layer_norm(x)  # rebinding frees the conv output before the activation
        return torch.ops.aten.gelu_(x)


class FeatureExtractor(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        dims = (1,) + cfg.conv_dims
        self.conv_layers = nn.ModuleList(
            ConvLayer(dims[i], dims[i + 1], cfg.conv_kernels[i], cfg.conv_strides[i], i == 0)
            for i in range(len(cfg.conv_dims))
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x.transpose(1, 2)


class FeatureProjection(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dims[-1], eps=cfg.eps)
        self.projection = nn.Linear(cfg.conv_dims[-1], cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(x))


class PositionConv(nn.Module):
    """Grouped convolution over time with a weight-normed kernel (norm over all but the kernel axis)."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.groups, self.kernel = cfg.position_groups, cfg.position_kernel
        self.weight_g = nn.Parameter(torch.ones(1, 1, cfg.position_kernel))
        self.weight_v = nn.Parameter(torch.zeros(cfg.hidden, cfg.hidden // cfg.position_groups, cfg.position_kernel))
        self.bias = nn.Parameter(torch.zeros(cfg.hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch._weight_norm(self.weight_v, self.weight_g, 2)  # the kernel nn.utils' weight norm runs
        out = F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)
        return out[..., :-1] if self.kernel % 2 == 0 else out


class PositionEmbedding(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.conv = PositionConv(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.gelu_(self.conv(x.transpose(1, 2))).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.heads = cfg.heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(cfg.hidden, cfg.hidden) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(proj(x), "b l (h d) -> b h l d", h=self.heads)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(rearrange(attention(q, k, v), "b h l d -> b l (h d)"))


class FeedForward(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.intermediate_dense = nn.Linear(cfg.hidden, cfg.intermediate)
        self.output_dense = nn.Linear(cfg.intermediate, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(torch.ops.aten.gelu_(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.attention = Attention(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.feed_forward = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # residuals added in place: the same sums, fewer buffers
        x = self.layer_norm(self.attention(x).add_(x))
        return self.final_layer_norm(self.feed_forward(x).add_(x))


class Encoder(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.pos_conv_embed = PositionEmbedding(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer_norm(x + self.pos_conv_embed(x))
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return states


class Wav2Vec2Encoder(nn.Module):
    """Waveform -> hidden states of every layer (the input to the first, then each layer's output)."""

    def __init__(self, cfg: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = FeatureExtractor(cfg)
        self.feature_projection = FeatureProjection(cfg)
        self.encoder = Encoder(cfg)

    def forward(self, waveform: torch.Tensor, frames: int | None = None) -> list[torch.Tensor]:
        """`waveform [B, N]` (normalised 16 kHz samples) -> `layers + 1` tensors `[B, T, hidden]`. With `frames`,
        the conv features are first resampled (linear, corners aligned) to `T = frames` (SkyReels: one per video
        frame at 25 fps); else T is the conv output length (50 a second)."""
        if waveform.ndim != 2:
            raise ConfigurationError(f"wav2vec2 takes waveforms [batch, samples], got {list(waveform.shape)}.")
        features = self.feature_extractor(waveform.to(self.feature_projection.projection.weight.dtype))
        if frames is not None:
            features = F.interpolate(features.transpose(1, 2), size=frames, mode="linear", align_corners=True)
            features = features.transpose(1, 2)
        return self.encoder(self.feature_projection(features))
