"""Building blocks of the LTX-2 video VAE, with parameter names of the official (ltx-core) checkpoint.

Every temporal convolution has kernel 3 and runs either causally (encoder: two copies of the first frame in
front) or centred (decoder: one copy of the first frame in front, one of the last frame behind). Either can
also be *streamed*: fed the clip a few frames at a time through a `TimeStream`, it keeps the two frames it
still needs (a centred one emits its output one frame late), so a chunked decode computes exactly the frames
of a whole-clip decode while holding only a few frames per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

Stride = tuple[int, int, int]


@dataclass
class TimeStream:
    """State of a streamed (chunked) pass: frames each layer carries over; `last` marks the final chunk."""

    carry: dict[int, torch.Tensor] = field(default_factory=dict)
    started: set[int] = field(default_factory=set)
    last: bool = False


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RMS normalisation over channels at every position (no weights)."""
    return x / torch.sqrt(torch.mean(x * x, dim=1, keepdim=True) + eps)


def _first(x: torch.Tensor, count: int) -> torch.Tensor:
    return x[:, :, :1].expand(-1, -1, count, -1, -1)


def _last(x: torch.Tensor) -> torch.Tensor:
    return x[:, :, -1:]


class TimeConv3d(nn.Module):
    """3x3x3 convolution, spatial padding 1 (`zeros` or `reflect`), temporal padding by frame repetition."""

    def __init__(self, in_channels: int, out_channels: int, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, padding=(0, 1, 1), padding_mode=padding_mode)

    def forward(self, x: torch.Tensor, causal: bool, stream: TimeStream | None = None) -> torch.Tensor:
        if stream is not None:
            return self._stream(x, causal, stream)
        if causal:
            return self.conv(torch.cat([_first(x, 2), x], dim=2))
        return self.conv(torch.cat([_first(x, 1), x, _last(x)], dim=2))

    def _stream(self, x: torch.Tensor, causal: bool, stream: TimeStream) -> torch.Tensor:
        key = id(self)
        prev = stream.carry.pop(key, None)
        if prev is None and x.shape[2] == 0:
            return self._empty(x)
        x = torch.cat([_first(x, 2 if causal else 1), x], dim=2) if prev is None else torch.cat([prev, x], dim=2)
        if stream.last and not causal:
            x = torch.cat([x, _last(x)], dim=2)
        if x.shape[2] < 3:
            stream.carry[key] = x
            return self._empty(x)
        stream.carry[key] = x[:, :, -2:].clone()  # a copy: a view would keep all of `x` alive
        return self.conv(x)

    def _empty(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(x.shape[0], self.conv.out_channels, 0, *x.shape[3:])


def _aligned(x: torch.Tensor, frames: int, key: int, stream: TimeStream | None) -> torch.Tensor:
    """The `frames` oldest not yet used frames of a skip path whose main path lags behind (streaming only)."""
    if stream is None:
        return x
    queue = stream.carry.pop(key, None)
    queue = x if queue is None else torch.cat([queue, x], dim=2)
    stream.carry[key] = queue[:, :, frames:].clone()
    return queue[:, :, :frames]


class ResBlock(nn.Module):
    """Pixel norm -> SiLU -> conv1 -> pixel norm -> SiLU -> conv2, plus the input (equal widths)."""

    def __init__(self, channels: int, padding_mode: str) -> None:
        super().__init__()
        self.conv1 = TimeConv3d(channels, channels, padding_mode)
        self.conv2 = TimeConv3d(channels, channels, padding_mode)

    def forward(self, x: torch.Tensor, causal: bool, stream: TimeStream | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(pixel_norm(x)), causal, stream)
        h = self.conv2(F.silu(pixel_norm(h)), causal, stream)
        return h + _aligned(x, h.shape[2], id(self), stream)


class ResStage(nn.Module):
    """`res_x`: a run of residual blocks (`res_blocks.{j}`)."""

    def __init__(self, channels: int, layers: int, padding_mode: str) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(ResBlock(channels, padding_mode) for _ in range(layers))

    def forward(self, x: torch.Tensor, causal: bool, stream: TimeStream | None = None) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x, causal, stream)
        return x


def _to_depth(x: torch.Tensor, stride: Stride) -> torch.Tensor:
    return rearrange(x, "b c (d p1) (h p2) (w p3) -> b (c p1 p2 p3) d h w", p1=stride[0], p2=stride[1], p3=stride[2])


def _to_space(x: torch.Tensor, stride: Stride) -> torch.Tensor:
    return rearrange(x, "b (c p1 p2 p3) d h w -> b c (d p1) (h p2) (w p3)", p1=stride[0], p2=stride[1], p3=stride[2])


class SpaceToDepthDown(nn.Module):
    """Encoder `compress_*_res`: conv to out/prod(stride) channels, fold stride into channels, plus the
    input folded the same way and averaged in groups to the output width."""

    def __init__(self, in_channels: int, out_channels: int, stride: Stride, padding_mode: str) -> None:
        super().__init__()
        self.stride = stride
        self.group = in_channels * math.prod(stride) // out_channels
        self.conv = TimeConv3d(in_channels, out_channels // math.prod(stride), padding_mode)

    def forward(self, x: torch.Tensor, causal: bool, stream: TimeStream | None = None) -> torch.Tensor:
        if self.stride[0] == 2:
            x = torch.cat([x[:, :, :1], x], dim=2)
        skip = rearrange(_to_depth(x, self.stride), "b (c g) d h w -> b c g d h w", g=self.group).mean(dim=2)
        return _to_depth(self.conv(x, causal), self.stride) + skip


class DepthToSpaceUp(nn.Module):
    """Decoder `compress_*`: conv to prod(stride)*in/multiplier channels, unfold into space and time (the
    first output frame of a temporal stride is dropped); `residual` adds the input unfolded and tiled."""

    def __init__(self, in_channels: int, stride: Stride, multiplier: int, residual: bool, padding_mode: str) -> None:
        super().__init__()
        self.stride = stride
        self.multiplier = multiplier
        self.residual = residual
        self.conv = TimeConv3d(in_channels, math.prod(stride) * in_channels // multiplier, padding_mode)

    def forward(self, x: torch.Tensor, causal: bool, stream: TimeStream | None = None) -> torch.Tensor:
        y = self.conv(x, causal, stream)
        out = _to_space(y, self.stride)
        if self.residual:
            skip = _to_space(_aligned(x, y.shape[2], id(self), stream), self.stride)
            out = out + skip.repeat(1, math.prod(self.stride) // self.multiplier, 1, 1, 1)
        if self.stride[0] == 2 and out.shape[2] and (stream is None or id(self) not in stream.started):
            out = out[:, :, 1:]
            if stream is not None:
                stream.started.add(id(self))
        return out
