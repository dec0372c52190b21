"""Wan 2.1 video VAE (z16, 4x8x8 compression), parameter names = `Wan2.1_VAE.pth` / `wan_2.1_vae.safetensors`.

Also home of `vae_config_from_shapes`, which tells a Wan 2.1 checkpoint from a Wan 2.2 one.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from videosdgx.runtime.errors import WrongComponentError
from videosdgx.wan.vae22 import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, WanVAE22, WanVAE22Config
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

WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class WanVAE21Config(VAEConfigMixin):
    """Wan 2.1 VAE hyper-parameters; the defaults are the released model."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD

    @property
    def patch_size(self) -> int:
        return 1


WAN21_VAE = WanVAE21Config()


class Encoder21(nn.Module):
    """conv1 -> `downsamples` (flat list of residual blocks and resamples) -> middle -> head (2z channels)."""

    def __init__(self, cfg: WanVAE21Config) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i < len(cfg.dim_mult) - 1:
                layers.append(Resample(out_dim, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
        self.downsamples = CausalSequential(*layers)
        self.middle = MiddleBlock(dims[-1])
        self.head = OutputHead(dims[-1], cfg.z_dim * 2)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        x = self.downsamples(self.conv1(x, cache), cache)
        return self.head(self.middle(x, cache), cache)


class Decoder21(nn.Module):
    """conv1 -> middle -> `upsamples` (flat list; each upsample halves the width) -> head (RGB)."""

    def __init__(self, cfg: WanVAE21Config) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal_upsample = cfg.temporal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = MiddleBlock(dims[0])
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
            if i > 0:
                in_dim //= 2  # the previous stage's upsample conv halved the width
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i < len(cfg.dim_mult) - 1:
                layers.append(Resample(out_dim, "upsample3d" if temporal_upsample[i] else "upsample2d"))
        self.upsamples = CausalSequential(*layers)
        self.head = OutputHead(dims[-1], 3)
        temporal = [i for i, layer in enumerate(layers) if isinstance(layer, Resample) and layer.mode == "upsample3d"]
        self.streamed_from = temporal[-1] + 1 if temporal else 0  # from here on, frame by frame

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        x = self.upsamples[: self.streamed_from](self.middle(self.conv1(x, cache), cache), cache)
        tail = self.upsamples[self.streamed_from :]
        return per_frame(x, lambda frame: self.head(tail(frame, cache), cache))


class WanVAE21(CausalVideoVAE):
    """Wan 2.1 VAE: `encode(video) -> normalised latents`, `decode(latents) -> video`, `decode_chunks`."""

    def __init__(self, config: WanVAE21Config = WAN21_VAE) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder21(config)
        self.conv1 = CausalConv3d(config.z_dim * 2, config.z_dim * 2, 1)
        self.conv2 = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder21(config)


def _stage_layout(shapes: Mapping[str, Sequence[int]], stage_key: str) -> list[int]:
    """Sorted distinct integer indices found right after `stage_key.` in the keys."""
    pattern = re.compile(re.escape(stage_key) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for key in shapes if (m := pattern.match(key))})


def vae_config_from_shapes(shapes: Mapping[str, Sequence[int]]) -> WanVAE21Config | WanVAE22Config:
    """Identify a Wan VAE state dict (official key names) from its key names and tensor shapes.

    Wan 2.2 nests residual blocks in stages (`decoder.upsamples.0.upsamples.0.*`); Wan 2.1 lists them flat
    (`decoder.upsamples.0.residual.*`). Released sizes get their latent mean/std, other sizes mean 0 / std 1.
    """
    if "encoder.conv1.weight" not in shapes or "conv2.weight" not in shapes:
        raise WrongComponentError(
            "This is not a Wan VAE in the official layout (no encoder.conv1.weight / conv2.weight); "
            "pick the Wan 2.1 or Wan 2.2 VAE file."
        )
    dim, in_channels = shapes["encoder.conv1.weight"][:2]
    z_dim = shapes["conv2.weight"][0]
    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in shapes:
        stages = _stage_layout(shapes, "encoder.downsamples")
        dim_mult = tuple(shapes[f"encoder.downsamples.{i}.downsamples.0.residual.6.weight"][0] // dim for i in stages)
        blocks = _stage_layout(shapes, "encoder.downsamples.0.downsamples")
        num_res_blocks = sum(f"encoder.downsamples.0.downsamples.{j}.residual.2.weight" in shapes for j in blocks)
        resample = [f"encoder.downsamples.{i}.downsamples.{num_res_blocks}" for i in stages[:-1]]
        temporal = tuple(f"{prefix}.time_conv.weight" in shapes for prefix in resample)
        decoder_dim = shapes["decoder.head.2.weight"][1] // dim_mult[0]
        real = z_dim == len(WAN22_LATENTS_MEAN)
        return WanVAE22Config(
            dim=dim,
            decoder_dim=decoder_dim,
            z_dim=z_dim,
            dim_mult=dim_mult,
            num_res_blocks=num_res_blocks,
            temporal_downsample=temporal,
            patch_size=int(round((in_channels / 3) ** 0.5)),
            latents_mean=WAN22_LATENTS_MEAN if real else (0.0,) * z_dim,
            latents_std=WAN22_LATENTS_STD if real else (1.0,) * z_dim,
        )
    layers = _stage_layout(shapes, "encoder.downsamples")
    resamples = [i for i in layers if f"encoder.downsamples.{i}.resample.1.weight" in shapes]
    num_res_blocks = resamples[0] if resamples else len(layers)
    stage_ends = [i - 1 for i in resamples] + [layers[-1]]
    dim_mult = tuple(shapes[f"encoder.downsamples.{i}.residual.6.weight"][0] // dim for i in stage_ends)
    temporal = tuple(f"encoder.downsamples.{i}.time_conv.weight" in shapes for i in resamples)
    real = z_dim == len(WAN21_LATENTS_MEAN)
    return WanVAE21Config(
        dim=dim,
        z_dim=z_dim,
        dim_mult=dim_mult,
        num_res_blocks=num_res_blocks,
        temporal_downsample=temporal,
        latents_mean=WAN21_LATENTS_MEAN if real else (0.0,) * z_dim,
        latents_std=WAN21_LATENTS_STD if real else (1.0,) * z_dim,
    )


def build_vae(config: WanVAE21Config | WanVAE22Config) -> WanVAE21 | WanVAE22:
    """The VAE module for a config (construct under `torch.device("meta")` for streamed loading)."""
    return WanVAE22(config) if isinstance(config, WanVAE22Config) else WanVAE21(config)
