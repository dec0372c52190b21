"""Causal 3-D building blocks shared by the Wan 2.1 and Wan 2.2 VAEs, and their chunked encode/decode driver.

Both VAEs are causal in time and run chunk by chunk: the encoder sees the first frame alone, then chunks of
`temporal_factor` (4) frames; the decoder sees one latent frame at a time. Every causal convolution carries
the last `CACHE_T` frames of its input from one chunk to the next in a `FeatureCache`, so a chunked pass equals
the reference implementation exactly while holding only one chunk of activations.
"""

from collections.abc import Callable, Iterator
from typing import Protocol


import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.runtime.attention import attention
from videosdgx.runtime.errors import ConfigurationError

CACHE_T = 2


class FeatureCache:
    """What the causal layers carry from one temporal chunk to the next, keyed by the layer itself: a causal
    convolution's last input frames (a list of `[B, C, H, W]`), a temporal downsample's last frame."""

    def __init__(self) -> None:
        self.frames: dict[nn.Module, torch.Tensor | list[torch.Tensor]] = {}
        self.first_chunk = True

    def numel(self) -> int:
        """Number of cached elements: bounded by the frame size, independent of how many chunks have run."""
        return sum(sum(t.numel() for t in v) if isinstance(v, list) else v.numel() for v in self.frames.values())


def _own(frame: torch.Tensor) -> torch.Tensor:
    """`frame` itself when it owns its storage, else a copy (a view would keep its whole chunk alive)."""
    return frame if frame.untyped_storage().nbytes() == frame.numel() * frame.element_size() else frame.clone()


class CausalConv3d(nn.Conv3d):
    """Conv3d that pads time on the left only; with a cache, the previous chunk's last frames replace that pad.

    A temporal kernel is computed frame by frame, as the sum over its taps of 2-D convolutions (spatial zero
    padding inside the convolution): no padded copy of the input is made, the zero frames of the causal pad are
    skipped (they add nothing), and the cache keeps the input frames themselves. This holds one frame's working
    set where a 3-D convolution over `[pad | cache | chunk]` holds the whole padded chunk; the result equals it up
    to the summation order (about 1e-7 relative).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(in_dim, out_dim, kernel_size, stride, padding=(0, ph, pw))
        self.time_pad = 2 * pt

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        if self.kernel_size[0] == 1 or self.stride[0] != 1:
            return super().forward(x)  # no look-back: one 3-D convolution (padding only in space, if any)
        previous = cache.frames.get(self, []) if cache is not None else []
        frames = [*previous, *x.unbind(2)]
        if cache is not None:
            cache.frames[self] = [_own(frame) for frame in frames[-CACHE_T:]]
        zeros = max(self.time_pad - len(previous), 0)
        outputs = [self._frame(frames, first - zeros) for first in range(zeros + len(frames) - self.kernel_size[0] + 1)]
        return outputs[0].unsqueeze(2) if len(outputs) == 1 else torch.stack(outputs, dim=2)

    def _frame(self, frames: list[torch.Tensor], first: int) -> torch.Tensor:
        """One output frame from input frames `first .. first + kt - 1` (negative indices: the zero pad)."""
        out = None
        for tap in range(max(-first, 0), self.kernel_size[0]):
            y = F.conv2d(frames[first + tap], self.weight[:, :, tap], self.bias if out is None else None,
                         self.stride[1:], self.padding[1:])
            out = y if out is None else out.add_(y)
        return out


class ChannelRMSNorm(nn.Module):
    """L2-normalise over channels (dim 1), times sqrt(C) and a learned per-channel `gamma`."""

    def __init__(self, dim: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *(1,) * spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=1).to(x.dtype) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    """RMS -> SiLU -> conv3 -> RMS -> SiLU -> conv3, plus a 1x1x1 conv shortcut when the width changes."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = CausalSequential(
            ChannelRMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            ChannelRMSNorm(out_dim),
            nn.SiLU(),
            nn.Identity(),  # dropout slot of the original: keeps the checkpoint indices 0, 2, 3, 6
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        return self.residual(x, cache) + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame separately."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(dim, spatial_dims=2)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = x.shape
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        qkv = self.to_qkv(self.norm(frames))
        q, k, v = rearrange(qkv, "n (three c) h w -> three n 1 (h w) c", three=3)
        out = rearrange(attention(q, k, v), "n 1 (h w) c -> n c h w", h=h, w=w)
        return x + rearrange(self.proj(out), "(b t) c h w -> b c t h w", b=b)


class Resample(nn.Module):
    """Per-frame 2x spatial up/downsampling; the `3d` modes also double / halve time with a causal `time_conv`.

    On the first chunk the temporal part is skipped, so frame 0 stays a single frame (the causal start).
    """

    def __init__(self, dim: int, mode: str, upsample_dim: int | None = None) -> None:
        super().__init__()
        self.mode = mode
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="nearest-exact"),
                nn.Conv2d(dim, upsample_dim or dim // 2, 3, padding=1),
            )
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        if self.mode == "upsample3d" and not cache.first_chunk:
            x = rearrange(self.time_conv(x, cache), "b (two c) t h w -> b c (t two) h w", two=2)
        x = torch.stack([self.resample(frame) for frame in x.unbind(2)], dim=2)  # one frame's working set
        if self.mode == "downsample3d":
            last = x[:, :, -1:].clone()
            if not cache.first_chunk:
                x = self.time_conv(torch.cat([cache.frames[self], x], dim=2))
            cache.frames[self] = last
        return x


class CausalSequential(nn.Sequential):
    """`nn.Sequential` that hands the feature cache to the layers that look back in time."""

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        for layer in self:
            x = layer(x, cache) if isinstance(layer, (CausalConv3d, ResidualBlock, Resample)) else layer(x)
        return x


def per_frame(x: torch.Tensor, layers: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply causal, frame-count-preserving `layers` one frame at a time and stack the results.

    With the feature cache this equals running them on the whole chunk, but the activations at the highest
    resolutions (after the last temporal upsample) hold one frame instead of four.
    """
    return torch.cat([layers(frame) for frame in x.split(1, dim=2)], dim=2)


class MiddleBlock(CausalSequential):
    """Residual, attention, residual at the bottleneck width (`middle.0/1/2`)."""

    def __init__(self, dim: int) -> None:
        super().__init__(ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim))


class OutputHead(CausalSequential):
    """RMS -> SiLU -> conv3 (`head.0` gamma, `head.2` conv)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__(ChannelRMSNorm(dim), nn.SiLU(), CausalConv3d(dim, out_dim, 3, padding=1))


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Fold each patch x patch pixel block into channels (Wan 2.2 order: channel, column, row)."""
    if patch == 1:
        return x
    return rearrange(x, "b c t (h q) (w r) -> b (c r q) t h w", q=patch, r=patch)


def unpatchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of `patchify`."""
    if patch == 1:
        return x
    return rearrange(x, "b (c r q) t h w -> b c t (h q) (w r)", q=patch, r=patch)


def frame_count_error(frames: int, factor: int) -> ConfigurationError:
    """The error for a pixel frame count that is not `factor * n + 1`, naming the nearest valid counts."""
    below = (frames - 1) // factor * factor + 1
    valid = [n for n in (below, below + factor) if n >= 1]
    return ConfigurationError(
        f"The Wan VAE encodes {factor}n+1 frames, got {frames}; use "
        + " or ".join(str(n) for n in valid)
        + " frames."
    )


def tile_spans(total: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Start/end of overlapping tiles of `size` covering `total`; the last tile is aligned to the end."""
    if size >= total:
        return [(0, total)]
    starts = list(range(0, total - size, size - overlap)) + [total - size]
    return [(s, s + size) for s in starts]


def blend_ramp(spans: list[tuple[int, int]], index: int, scale: int, like: torch.Tensor) -> torch.Tensor:
    """Weights of tile `index` along one axis in pixels: linear ramps over the overlaps with its neighbours."""
    start, end = spans[index]
    weight = torch.ones((end - start) * scale, dtype=like.dtype, device=like.device)
    if index > 0:
        n = (spans[index - 1][1] - start) * scale
        ramp = (torch.arange(n, dtype=like.dtype, device=like.device) + 0.5) / n
        weight[:n] = torch.minimum(weight[:n], ramp)
    if index < len(spans) - 1:
        n = (end - spans[index + 1][0]) * scale
        ramp = (torch.arange(n, dtype=like.dtype, device=like.device) + 0.5) / n
        weight[-n:] = torch.minimum(weight[-n:], ramp.flip(0))
    return weight


class VAEConfig(Protocol):
    """What the chunked driver needs to know about a Wan VAE configuration."""

    z_dim: int
    latents_mean: tuple[float, ...]
    latents_std: tuple[float, ...]

    @property
    def temporal_factor(self) -> int: ...

    @property
    def spatial_factor(self) -> int: ...

    @property
    def patch_size(self) -> int: ...


class VAEConfigMixin:
    """Validation and derived sizes shared by the Wan VAE config dataclasses."""

    def __post_init__(self) -> None:
        if not len(self.latents_mean) == len(self.latents_std) == self.z_dim:
            raise ValueError(f"latents_mean/std need {self.z_dim} values each")

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1) * self.patch_size


class CausalVideoVAE(nn.Module):
    """Chunked causal encode/decode shared by both Wan VAEs.

    Subclasses set `config`, `encoder`, `decoder`, `conv1` (2z -> 2z, before the mu/logvar split) and
    `conv2` (z -> z, before the decoder).
    """

    config: VAEConfig
    encoder: nn.Module
    decoder: nn.Module
    conv1: CausalConv3d
    conv2: CausalConv3d

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(self.config.latents_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.config.latents_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ConfigurationError(f"The Wan VAE encodes video shaped [B, 3, T, H, W], got {list(video.shape)}.")
        frames, height, width = video.shape[2:]
        if (frames - 1) % self.config.temporal_factor:
            raise frame_count_error(frames, self.config.temporal_factor)
        s = self.config.spatial_factor
        if height % s or width % s:
            raise ConfigurationError(
                f"The Wan VAE needs height and width divisible by {s}, got {height}x{width}; "
                f"use {height // s * s or s}x{width // s * s or s}."
            )

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Video [B, 3, 4n+1, H, W] in [-1, 1] -> normalised latents (mu - mean) / std [B, z, n+1, H/s, W/s].

        With a (CPU) `generator`, a sample `mu + exp(logvar / 2) * noise` of the posterior replaces its mean (as
        diffusers' `latent_dist.sample(generator)`; logvar clamped to [-30, 20]).
        """
        self._check_video(video)
        p = next(self.parameters())
        x = patchify(video.to(device=p.device, dtype=p.dtype), self.config.patch_size)
        step = self.config.temporal_factor
        cache = FeatureCache()
        outs = []
        bounds = [0, *range(1, x.shape[2] + 1, step)]  # first frame alone, then chunks of `step`
        for lo, hi in zip(bounds, bounds[1:]):
            outs.append(self.encoder(x[:, :, lo:hi], cache))
            cache.first_chunk = False
        mu, logvar = self.conv1(torch.cat(outs, dim=2)).float().chunk(2, dim=1)
        if generator is not None:
            noise = torch.randn(mu.shape, generator=generator, dtype=torch.float32).to(mu.device)
            mu = mu + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise
        mean, std = self._latent_stats(mu)
        return ((mu - mean) / std).float()

    def _decode_frame(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        return unpatchify(self.decoder(self.conv2(z), cache), self.config.patch_size)

    @torch.no_grad()
    def decode_chunks(
        self, latents: torch.Tensor, tile: tuple[int, int] | None = None, overlap: int = 0
    ) -> Iterator[torch.Tensor]:
        """Yield decoded pixel chunks in [-1, 1] (model dtype), one per latent frame: 1 frame, then 4 each.

        `tile=(th, tw)` (latent cells) decodes overlapping spatial tiles of that size, `overlap` cells apart
        at each seam, each with its own causal cache, and blends them linearly across the seams. Tiling is
        approximate: a tile does not see the context beyond its border.
        """
        p = next(self.parameters())
        mean, std = self._latent_stats(p)
        z = latents.to(device=p.device, dtype=p.dtype) * std + mean
        height, width = z.shape[3:]
        if tile is None:
            rows, cols = [(0, height)], [(0, width)]
        else:
            if not 0 <= overlap < min(tile):
                raise ConfigurationError(f"VAE tile overlap must be in [0, {min(tile)}), got {overlap}.")
            rows, cols = tile_spans(height, tile[0], overlap), tile_spans(width, tile[1], overlap)
        caches = {(i, j): FeatureCache() for i in range(len(rows)) for j in range(len(cols))}
        s = self.config.spatial_factor
        for t in range(z.shape[2]):
            frame = z[:, :, t : t + 1]
            if len(caches) == 1:
                out = self._decode_frame(frame, caches[0, 0])
            else:
                out = self._decode_tiled(frame, rows, cols, caches, s)
            for cache in caches.values():
                cache.first_chunk = False
            yield out.clamp_(-1.0, 1.0)

    def _decode_tiled(
        self,
        z: torch.Tensor,
        rows: list[tuple[int, int]],
        cols: list[tuple[int, int]],
        caches: dict[tuple[int, int], FeatureCache],
        s: int,
    ) -> torch.Tensor:
        total = weights = None
        for (i, j), cache in caches.items():
            (h0, h1), (w0, w1) = rows[i], cols[j]
            out = self._decode_frame(z[:, :, :, h0:h1, w0:w1], cache)
            if total is None:
                b, c, t = out.shape[:3]
                total = out.new_zeros(b, c, t, z.shape[3] * s, z.shape[4] * s)
                weights = out.new_zeros(z.shape[3] * s, z.shape[4] * s)
            weight = blend_ramp(rows, i, s, out)[:, None] * blend_ramp(cols, j, s, out)[None, :]
            total[..., h0 * s : h1 * s, w0 * s : w1 * s] += out * weight
            weights[h0 * s : h1 * s, w0 * s : w1 * s] += weight
        return total / weights

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, tile: tuple[int, int] | None = None, overlap: int = 0) -> torch.Tensor:
        """Normalised latents [B, z, T, h, w] -> float32 video [B, 3, 4(T-1)+1, h*s, w*s] in [-1, 1].

        Chunks are written into one preallocated output, so memory beyond the output stays constant in T.
        """
        b, _, frames, height, width = latents.shape
        f, s = self.config.temporal_factor, self.config.spatial_factor
        video = torch.empty(
            b, 3, 1 + f * (frames - 1), height * s, width * s, dtype=torch.float32, device=latents.device
        )
        start = 0
        for chunk in self.decode_chunks(latents, tile=tile, overlap=overlap):
            video[:, :, start : start + chunk.shape[2]] = chunk
            start += chunk.shape[2]
        return video
