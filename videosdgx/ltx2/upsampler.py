"""LTX-2 latent upsampler (`ltx-2-spatial-upscaler-x2-1.0.safetensors` and relatives), official key names.

Works on *un-normalised* latents: `upsample(latents, mean, std)` multiplies the VAE statistics back in, runs the
network and normalises again (ltx-core `upsample_video`). 3D (Conv3d) upsamplers, as released: spatial x2
(`upsampler.0` Conv2d + pixel shuffle per frame), spatial rational (`upsampler.conv` + shuffle by the numerator +
blurred stride by the denominator, e.g. x1.5) and temporal x2 (`upsampler.0` Conv3d, first frame dropped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.runtime.errors import CheckpointError, ConfigurationError

RATIONAL = {0.75: (3, 4), 1.5: (3, 2), 2.0: (2, 1), 4.0: (4, 1)}


@dataclass(frozen=True)
class UpsamplerConfig:
    in_channels: int = 128
    mid_channels: int = 512
    blocks: int = 4
    mode: str = "spatial"  # spatial | rational | temporal
    scale: float = 2.0


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(32, channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + x)


class BlurDownsample(nn.Module):
    """5x5 binomial blur with stride `stride` per channel (`kernel` is stored in the file)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride
        taps = torch.tensor([math.comb(4, k) for k in range(5)], dtype=torch.float32)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        weight = self.kernel.to(x).expand(x.shape[1], 1, 5, 5)
        return F.conv2d(x, weight, stride=self.stride, padding=2, groups=x.shape[1])


class RationalResampler(nn.Module):
    """Scale H, W by num/den: conv to num^2 x channels, pixel shuffle by num, binomial blur with stride den."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        if scale not in RATIONAL:
            raise CheckpointError(f"Latent upsampler scale {scale} is not supported (known: {sorted(RATIONAL)}).")
        self.num, den = RATIONAL[scale]
        self.conv = nn.Conv2d(channels, self.num**2 * channels, 3, padding=1)
        self.blur_down = BlurDownsample(den)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.conv(x), "b (c p q) h w -> b c (h p) (w q)", p=self.num, q=self.num)
        return self.blur_down(x)


class LTX2LatentUpsampler(nn.Module):
    def __init__(self, cfg: UpsamplerConfig) -> None:
        super().__init__()
        self.config = cfg
        mid = cfg.mid_channels
        self.initial_conv = nn.Conv3d(cfg.in_channels, mid, 3, padding=1)
        self.initial_norm = nn.GroupNorm(32, mid)
        self.res_blocks = nn.ModuleList(ResBlock(mid) for _ in range(cfg.blocks))
        if cfg.mode == "rational":
            self.upsampler = RationalResampler(mid, cfg.scale)
        elif cfg.mode == "temporal":
            self.upsampler = nn.Sequential(nn.Conv3d(mid, 2 * mid, 3, padding=1))
        else:
            self.upsampler = nn.Sequential(nn.Conv2d(mid, 4 * mid, 3, padding=1))
        self.post_upsample_res_blocks = nn.ModuleList(ResBlock(mid) for _ in range(cfg.blocks))
        self.final_conv = nn.Conv3d(mid, cfg.in_channels, 3, padding=1)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.mode == "temporal":
            return rearrange(self.upsampler(x), "b (c p) f h w -> b c (f p) h w", p=2)[:, :, 1:]
        frames = x.shape[2]
        x = rearrange(x, "b c f h w -> (b f) c h w")
        if self.config.mode == "rational":
            x = self.upsampler(x)
        else:
            x = rearrange(self.upsampler(x), "n (c p q) h w -> n c (h p) (w q)", p=2, q=2)
        return rearrange(x, "(b f) c h w -> b c f h w", f=frames)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Un-normalised latents [B, C, F, H, W] -> upsampled un-normalised latents."""
        x = F.silu(self.initial_norm(self.initial_conv(latents)))
        for block in self.res_blocks:
            x = block(x)
        x = self._upsample(x)
        for block in self.post_upsample_res_blocks:
            x = block(x)
        return self.final_conv(x)

    @torch.no_grad()
    def upsample(self, latents: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> upsampled normalised latents, with the video VAE's statistics (per channel)."""
        if latents.ndim != 5 or latents.shape[1] != self.config.in_channels:
            raise ConfigurationError(
                f"The latent upsampler takes video latents shaped [B, {self.config.in_channels}, F, H, W], "
                f"got {list(latents.shape)}."
            )
        p = next(self.parameters())
        shape = (1, -1, 1, 1, 1)
        mean, std = mean.to(p).view(shape), std.to(p).view(shape)
        out = self.forward(latents.to(p) * std + mean)
        return ((out - mean) / std).float()


def upsampler_config(shapes: Mapping[str, Sequence[int]], header: Mapping | None = None) -> UpsamplerConfig:
    """Config from the file's `config` header (ltx-core names) or, failing that, from the tensor shapes."""
    header = header or {}
    if "initial_conv.weight" not in shapes or "final_conv.weight" not in shapes:
        raise CheckpointError("This is not an LTX-2 latent upsampler (no initial_conv / final_conv weights).")
    initial = shapes["initial_conv.weight"]
    mid, in_channels = initial[0], initial[1]
    if len(initial) != 5:
        raise CheckpointError("Only 3D latent upsamplers (the released LTX-2 files) are supported; this one is 2D.")
    blocks = len({k.split(".")[1] for k in shapes if k.startswith("res_blocks.")})
    if "upsampler.conv.weight" in shapes:
        numerator = math.isqrt(shapes["upsampler.conv.weight"][0] // mid)
        scale = float(header.get("spatial_scale", 0.0)) or {2: 2.0, 3: 1.5, 4: 4.0}.get(numerator, 0.0)
        mode = "rational"
    elif len(shapes["upsampler.0.weight"]) == 5:
        if shapes["upsampler.0.weight"][0] != 2 * mid:
            raise CheckpointError("Spatio-temporal latent upsamplers are not supported; use the spatial x2 file.")
        mode, scale = "temporal", 2.0
    else:
        mode, scale = "spatial", 2.0
    return UpsamplerConfig(in_channels=in_channels, mid_channels=mid, blocks=blocks, mode=mode, scale=scale)
