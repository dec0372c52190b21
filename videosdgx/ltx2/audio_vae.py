"""LTX-2 audio VAE: stereo log-mel [B, 2, T, 64] <-> latents [B, 8, T/4, 16] (causal along time).

Parameter names are those of the official checkpoint with the `audio_vae.` prefix removed (`encoder.*`,
`decoder.*`); `per_channel_statistics.{mean-of-means,std-of-means}` (128 = 8 channels x 16 bins, applied to
the packed `(c f)` vector of each latent frame) are the buffers `latents_mean` / `latents_std`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.ltx2.video_vae_blocks import pixel_norm
from videosdgx.runtime.errors import CheckpointError, ConfigurationError

EPS = 1e-6
DOWNSAMPLE = 4  # latent frames per mel frame (two stride-2 stages)


@dataclass(frozen=True)
class AudioVAEConfig:
    """Hyper-parameters; the defaults are the released LTX-2 / 2.3 model."""

    base_channels: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    latent_channels: int = 8
    in_channels: int = 2
    out_channels: int = 2
    mel_bins: int = 64
    mid_attention: bool = False

    @property
    def packed_width(self) -> int:
        return self.latent_channels * self.mel_bins // 2 ** (len(self.ch_mult) - 1)


class CausalConv2d(nn.Module):
    """Conv2d over (time, frequency), zero-padded only before along time (`conv.*`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.pad = (kernel // 2, kernel - 1 - kernel // 2, kernel - 1, 0)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = CausalConv2d(in_channels, out_channels)
        self.conv2 = CausalConv2d(out_channels, out_channels)
        self.nin_shortcut = CausalConv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(pixel_norm(x, EPS)))
        h = self.conv2(F.silu(pixel_norm(h, EPS)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all (time, frequency) positions, 1x1 conv projections."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = pixel_norm(x, EPS)
        q, k, v = (rearrange(f(h), "b c t f -> b 1 (t f) c") for f in (self.q, self.k, self.v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b 1 (t f) c -> b c t f", t=x.shape[2])
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 2, 0)))


class Upsample(nn.Module):
    """Nearest x2, causal conv, then the first time row dropped (keeps 2T - 1 rows causal)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv2d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))[:, :, 1:]


class MidBlock(nn.Module):
    def __init__(self, channels: int, attention: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels) if attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution: `block.{j}` residual blocks, then an optional `downsample` / `upsample`."""

    def __init__(self, blocks: list[ResnetBlock], resample: nn.Module | None, name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            self.add_module(name, resample)
        self.resample = name if resample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return getattr(self, self.resample)(x) if self.resample else x


class AudioEncoder(nn.Module):
    def __init__(self, cfg: AudioVAEConfig) -> None:
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.ch_mult]
        self.conv_in = CausalConv2d(cfg.in_channels, cfg.base_channels)
        levels, width = [], cfg.base_channels
        for i, out in enumerate(widths):
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(width, out))
                width = out
            levels.append(Level(blocks, Downsample(width) if i < len(widths) - 1 else None, "downsample"))
        self.down = nn.ModuleList(levels)
        self.mid = MidBlock(width, cfg.mid_attention)
        self.conv_out = CausalConv2d(width, 2 * cfg.latent_channels)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(mel)
        for level in self.down:
            x = level(x)
        return self.conv_out(F.silu(pixel_norm(self.mid(x), EPS)))


class AudioDecoder(nn.Module):
    def __init__(self, cfg: AudioVAEConfig) -> None:
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.ch_mult]
        width = widths[-1]
        self.conv_in = CausalConv2d(cfg.latent_channels, width)
        self.mid = MidBlock(width, cfg.mid_attention)
        levels: list[Level] = []
        for i in reversed(range(len(widths))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(width, widths[i]))
                width = widths[i]
            levels.insert(0, Level(blocks, Upsample(width) if i > 0 else None, "upsample"))
        self.up = nn.ModuleList(levels)
        self.conv_out = CausalConv2d(width, cfg.out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(pixel_norm(x, EPS)))


class LTX2AudioVAE(nn.Module):
    """`encode(mel) -> normalised latents`, `decode(latents) -> mel` (either half may be absent: `parts`)."""

    def __init__(self, config: AudioVAEConfig = AudioVAEConfig(), parts: tuple[str, ...] = ("encoder", "decoder")):
        super().__init__()
        self.config = config
        self.encoder = AudioEncoder(config) if "encoder" in parts else None
        self.decoder = AudioDecoder(config) if "decoder" in parts else None
        self.register_buffer("latents_mean", torch.zeros(config.packed_width))
        self.register_buffer("latents_std", torch.ones(config.packed_width))

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.latents_mean.to(like), self.latents_std.to(like)

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel [B, 2, T, 64] -> normalised latent means [B, 8, ceil(T/4), 16] (fp32)."""
        if self.encoder is None:
            raise ConfigurationError(
                "This audio VAE file has no encoder; load the full LTX-2 checkpoint to encode audio."
            )
        if mel.ndim != 4 or mel.shape[1] != self.config.in_channels or mel.shape[3] != self.config.mel_bins:
            raise ConfigurationError(
                f"The LTX-2 audio VAE encodes log-mel spectrograms shaped [B, {self.config.in_channels}, T, "
                f"{self.config.mel_bins}], got {list(mel.shape)}."
            )
        p = next(self.parameters())
        mu = self.encoder(mel.to(device=p.device, dtype=p.dtype))[:, : self.config.latent_channels]
        mean, std = self._stats(mu)
        packed = (rearrange(mu, "b c t f -> b t (c f)") - mean) / std
        return rearrange(packed, "b t (c f) -> b c t f", c=self.config.latent_channels).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, 8, T, 16] -> log-mel [B, 2, 4T - 3, 64] (model dtype)."""
        if self.decoder is None:
            raise ConfigurationError("This audio VAE file has no decoder; load the full LTX-2 checkpoint.")
        c = self.config.latent_channels
        if (
            latents.ndim != 4
            or latents.shape[1] * latents.shape[3] != self.config.packed_width
            or latents.shape[1] != c
        ):
            raise ConfigurationError(
                f"The LTX-2 audio VAE decodes latents shaped [B, {c}, T, {self.config.packed_width // c}], "
                f"got {list(latents.shape)}."
            )
        p = next(self.parameters())
        mean, std = self._stats(p)
        packed = rearrange(latents.to(device=p.device, dtype=p.dtype), "b c t f -> b t (c f)") * std + mean
        mel = self.decoder(rearrange(packed, "b t (c f) -> b c t f", c=c))
        frames = max(latents.shape[2] * DOWNSAMPLE - (DOWNSAMPLE - 1), 1)
        mel = mel[:, :, :frames, : self.config.mel_bins]
        return F.pad(mel, (0, self.config.mel_bins - mel.shape[3], 0, frames - mel.shape[2]))


def _indices(shapes: Mapping[str, Sequence[int]], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for key in shapes if (m := pattern.match(key))})


def audio_config_from_shapes(shapes: Mapping[str, Sequence[int]]) -> AudioVAEConfig:
    """Config of an audio VAE state dict (module names: encoder, decoder or both, and `latents_mean`).

    The mel width is not visible in convolution shapes; it follows from the packed statistics' width."""
    part = "decoder" if "decoder.conv_in.conv.weight" in shapes else "encoder"
    if f"{part}.conv_in.conv.weight" not in shapes:
        raise CheckpointError(
            "This is not an LTX-2 audio VAE (no encoder/decoder conv_in); pick the LTX-2 "
            "checkpoint or its audio VAE file."
        )
    if any(".attn." in key for key in shapes):
        raise CheckpointError("This audio VAE has attention at some resolutions, which LTX-2 releases do not use.")
    levels = _indices(shapes, f"{part}.{'up' if part == 'decoder' else 'down'}.")
    container = "up" if part == "decoder" else "down"
    widths = [shapes[f"{part}.{container}.{i}.block.0.conv2.conv.weight"][0] for i in levels]
    base = widths[0]
    blocks = len(_indices(shapes, f"{part}.{container}.0.block."))
    if part == "decoder":
        latent, out = shapes["decoder.conv_in.conv.weight"][1], shapes["decoder.conv_out.conv.weight"][0]
        in_channels = shapes["encoder.conv_in.conv.weight"][1] if "encoder.conv_in.conv.weight" in shapes else out
        blocks -= 1
    else:
        latent, in_channels = shapes["encoder.conv_out.conv.weight"][0] // 2, shapes["encoder.conv_in.conv.weight"][1]
        out = in_channels
    mel_bins = shapes["latents_mean"][0] * 2 ** (len(widths) - 1) // latent if "latents_mean" in shapes else 64
    return AudioVAEConfig(
        base_channels=base,
        ch_mult=tuple(w // base for w in widths),
        num_res_blocks=blocks,
        latent_channels=latent,
        in_channels=in_channels,
        out_channels=out,
        mel_bins=mel_bins,
        mid_attention=f"{part}.mid.attn_1.q.weight" in shapes,
    )
