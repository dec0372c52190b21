"""Wan 2.2 video VAE (z48, 4x16x16 compression), parameter names = `Wan2.2_VAE.pth` / `wan2.2_vae.safetensors`.

Differs from 2.1 by a 2x2 pixel patchify around the model, a wider decoder, and stages whose main path is
added to a parameter-free shortcut that moves space/time into channels (down) or back (up).
"""

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

from videosdgx.wan.vae_blocks import (
    CausalConv3d,
    CausalSequential,
    CausalVideoVAE,
    FeatureCache,
    MiddleBlock,
    OutputHead,
    Resample,
    ResidualBlock,
    VAEConfigMixin,
    per_frame,
)

WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip


@dataclass(frozen=True)
class WanVAE22Config(VAEConfigMixin):
    """Wan 2.2 VAE hyper-parameters; the defaults are the released model (TI2V-5B)."""

    dim: int = 160
    decoder_dim: int = 256
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    patch_size: int = 2
    latents_mean: tuple[float, ...] = WAN22_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN22_LATENTS_STD


WAN22_VAE = WanVAE22Config()


class AvgDown3D(nn.Module):
    """Parameter-free shortcut: fold (ft, fs, fs) blocks into channels, then average channel groups to `out_dim`."""

    def __init__(self, out_dim: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        self.out_dim, self.factor_t, self.factor_s = out_dim, factor_t, factor_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        x = F.pad(x, (0, 0, 0, 0, -x.shape[2] % ft, 0))  # causal: pad time on the left to a multiple of ft
        x = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (c pt ph pw) t h w", pt=ft, ph=fs, pw=fs)
        return reduce(x, "b (o g) t h w -> b o t h w", "mean", o=self.out_dim)


class DupUp3D(nn.Module):
    """Parameter-free shortcut: repeat channels, unfold them into (ft, fs, fs) blocks; on the first chunk
    drop the first `factor_t - 1` frames (causal start)."""

    def __init__(self, in_dim: int, out_dim: int, factor_t: int, factor_s: int) -> None:
        super().__init__()
        self.repeats = out_dim * factor_t * factor_s * factor_s // in_dim
        self.factor_t, self.factor_s = factor_t, factor_s

    def forward(self, x: torch.Tensor, first_chunk: bool) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        x = repeat(x, "b c t h w -> b (c r) t h w", r=self.repeats)
        x = rearrange(x, "b (o pt ph pw) t h w -> b o (t pt) (h ph) (w pw)", pt=ft, ph=fs, pw=fs)
        return x[:, :, ft - 1 :] if first_chunk else x


class DownStage(nn.Module):
    """`num_res_blocks` residual blocks + optional downsample (`downsamples.*`), plus the AvgDown3D shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.avg_shortcut = AvgDown3D(out_dim, 2 if temporal else 1, 2 if spatial else 1)
        layers: list[nn.Module] = []
        for _ in range(num_res_blocks):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if spatial:
            layers.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = CausalSequential(*layers)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        return self.downsamples(x, cache) + self.avg_shortcut(x)


class UpStage(nn.Module):
    """`num_res_blocks + 1` residual blocks + optional upsample (`upsamples.*`), plus the DupUp3D shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if temporal else 1, 2) if spatial else None
        layers: list[nn.Module] = []
        for _ in range(num_res_blocks + 1):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if spatial:
            layers.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", upsample_dim=out_dim))
        self.upsamples = CausalSequential(*layers)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        out = self.upsamples(x, cache)
        if self.avg_shortcut is None:
            return out
        return out + self.avg_shortcut(x, cache.first_chunk)


class Encoder22(nn.Module):
    """conv1 (patchified input) -> DownStages -> middle -> head (2z channels)."""

    def __init__(self, cfg: WanVAE22Config) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        last = len(cfg.dim_mult) - 1
        self.conv1 = CausalConv3d(3 * cfg.patch_size**2, dims[0], 3, padding=1)
        self.downsamples = nn.Sequential(
            *(
                DownStage(i_dim, o_dim, cfg.num_res_blocks, i < last and cfg.temporal_downsample[i], i < last)
                for i, (i_dim, o_dim) in enumerate(pairwise(dims))
            )
        )
        self.middle = MiddleBlock(dims[-1])
        self.head = OutputHead(dims[-1], cfg.z_dim * 2)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for stage in self.downsamples:
            x = stage(x, cache)
        return self.head(self.middle(x, cache), cache)


class Decoder22(nn.Module):
    """conv1 -> middle -> UpStages -> head (patchified RGB)."""

    def __init__(self, cfg: WanVAE22Config) -> None:
        super().__init__()
        dims = [cfg.decoder_dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal_upsample = cfg.temporal_downsample[::-1]
        last = len(cfg.dim_mult) - 1
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = MiddleBlock(dims[0])
        self.upsamples = nn.Sequential(
            *(
                UpStage(i_dim, o_dim, cfg.num_res_blocks, i < last and temporal_upsample[i], i < last)
                for i, (i_dim, o_dim) in enumerate(pairwise(dims))
            )
        )
        self.head = OutputHead(dims[-1], 3 * cfg.patch_size**2)
        temporal = [i for i, stage in enumerate(self.upsamples) if stage.temporal]
        self.streamed_from = temporal[-1] + 1 if temporal else 0  # from here on, frame by frame

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        x = self.middle(self.conv1(x, cache), cache)
        for stage in self.upsamples[: self.streamed_from]:
            x = stage(x, cache)

        def tail(frame: torch.Tensor) -> torch.Tensor:
            for stage in self.upsamples[self.streamed_from :]:
                frame = stage(frame, cache)
            return self.head(frame, cache)

        return per_frame(x, tail)


class WanVAE22(CausalVideoVAE):
    """Wan 2.2 VAE: `encode(video) -> normalised latents`, `decode(latents) -> video`, `decode_chunks`."""

    def __init__(self, config: WanVAE22Config = WAN22_VAE) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder22(config)
        self.conv1 = CausalConv3d(config.z_dim * 2, config.z_dim * 2, 1)
        self.conv2 = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder22(config)
