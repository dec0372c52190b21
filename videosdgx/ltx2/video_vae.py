"""LTX-2 / LTX-2.3 video VAE: 3 -> 128 latent channels, x32 space, x8 time (causal encoder, centred decoder).

Parameter names are those of the official checkpoint with the `vae.` prefix removed (`encoder.*`, `decoder.*`);
the latent statistics `per_channel_statistics.{mean-of-means,std-of-means}` are the buffers `latents_mean` /
`latents_std`. The block lists come from the checkpoint's `config` header when it has one, otherwise from the
tensor shapes (`config_from_checkpoint`). `decode_chunks` streams the decoder over a few frames at a time:
memory stays flat in the clip length and the frames equal those of a whole-clip decode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.ltx2.video_vae_blocks import (
    DepthToSpaceUp,
    ResStage,
    SpaceToDepthDown,
    Stride,
    TimeConv3d,
    TimeStream,
    pixel_norm,
)
from videosdgx.runtime.errors import CheckpointError, ConfigurationError
from videosdgx.wan.vae_blocks import frame_count_error, patchify, unpatchify

STRIDES: dict[str, Stride] = {"space": (1, 2, 2), "time": (2, 1, 1), "all": (2, 2, 2)}


@dataclass(frozen=True)
class Block:
    """One entry of `encoder_blocks` / `decoder_blocks`: a run of `layers` residual blocks (`res`), or a
    resampler over `stride` changing the width (encoder: x`multiplier`, decoder: /`multiplier`)."""

    kind: str
    layers: int = 0
    stride: Stride = (1, 1, 1)
    multiplier: int = 1
    residual: bool = False


@dataclass(frozen=True)
class VideoVAEConfig:
    """Widths and block lists; `decoder_blocks` are in execution order (the header lists them reversed)."""

    encoder_blocks: tuple[Block, ...]
    decoder_blocks: tuple[Block, ...]
    encoder_width: int = 128
    decoder_width: int = 1024
    latent_channels: int = 128
    patch_size: int = 4
    encoder_padding: str = "zeros"
    decoder_padding: str = "reflect"
    causal_decoder: bool = False

    @property
    def temporal_factor(self) -> int:
        return _product(self.decoder_blocks, 0)

    @property
    def spatial_factor(self) -> int:
        return _product(self.decoder_blocks, 1) * self.patch_size


def _product(blocks: Sequence[Block], axis: int) -> int:
    out = 1
    for block in blocks:
        out *= block.stride[axis]
    return out


class Encoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig) -> None:
        super().__init__()
        pad = cfg.encoder_padding
        width = cfg.encoder_width
        self.conv_in = TimeConv3d(3 * cfg.patch_size**2, width, pad)
        blocks: list[nn.Module] = []
        for block in cfg.encoder_blocks:
            if block.kind == "res":
                blocks.append(ResStage(width, block.layers, pad))
            else:
                blocks.append(SpaceToDepthDown(width, width * block.multiplier, block.stride, pad))
                width *= block.multiplier
        self.down_blocks = nn.ModuleList(blocks)
        self.conv_out = TimeConv3d(width, cfg.latent_channels + 1, pad)  # means + one shared log-variance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x, causal=True)
        for block in self.down_blocks:
            x = block(x, causal=True)
        return self.conv_out(F.silu(pixel_norm(x)), causal=True)


class Decoder(nn.Module):
    def __init__(self, cfg: VideoVAEConfig) -> None:
        super().__init__()
        pad = cfg.decoder_padding
        width = cfg.decoder_width
        self.causal = cfg.causal_decoder
        self.conv_in = TimeConv3d(cfg.latent_channels, width, pad)
        blocks: list[nn.Module] = []
        for block in cfg.decoder_blocks:
            if block.kind == "res":
                blocks.append(ResStage(width, block.layers, pad))
            else:
                blocks.append(DepthToSpaceUp(width, block.stride, block.multiplier, block.residual, pad))
                width //= block.multiplier
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_out = TimeConv3d(width, 3 * cfg.patch_size**2, pad)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z, self.causal)
        for block in self.up_blocks:
            x = block(x, self.causal)
        return self.conv_out(F.silu(pixel_norm(x)), self.causal)

    def stages(self) -> list[tuple[Callable[[torch.Tensor, TimeStream], torch.Tensor], int]]:
        """The decoder as a chain of streamable steps with their frame rate relative to the latents."""
        steps: list[tuple[Callable, int]] = [(lambda x, s: self.conv_in(x, self.causal, s), 1)]
        rate = 1
        for block in self.up_blocks:
            if isinstance(block, ResStage):
                steps += [(partial(_call, res, self.causal), rate) for res in block.res_blocks]
            else:
                rate *= block.stride[0]
                steps.append((partial(_call, block, self.causal), rate))
        steps.append((lambda x, s: self.conv_out(F.silu(pixel_norm(x)), self.causal, s), rate))
        return steps


def _call(module: nn.Module, causal: bool, x: torch.Tensor, stream: TimeStream) -> torch.Tensor:
    return module(x, causal, stream)


class LTX2VideoVAE(nn.Module):
    """`encode(video) -> normalised latents`, `decode(latents) -> video`, `decode_chunks` (streamed)."""

    def __init__(self, config: VideoVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("latents_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latents_std", torch.ones(config.latent_channels))

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        return (self.latents_mean.to(like).view(shape), self.latents_std.to(like).view(shape))

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, 8n+1, H, W] in [-1, 1] -> normalised latent means [B, 128, n+1, H/32, W/32] (fp32)."""
        self._check_video(video)
        p = next(self.parameters())
        x = patchify(video.to(device=p.device, dtype=p.dtype), self.config.patch_size)
        mu = self.encoder(x)[:, : self.config.latent_channels]
        mean, std = self._stats(mu)
        return ((mu - mean) / std).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, 128, F, h, w] -> video [B, 3, 8(F-1)+1, 32h, 32w] in [-1, 1], in one pass."""
        return unpatchify(self.decoder(self._un_normalise(latents)), self.config.patch_size)

    @torch.no_grad()
    def decode_chunks(self, latents: torch.Tensor, chunk: int = 1, budget: int = 2**25) -> Iterator[torch.Tensor]:
        """Yield the decoded video in time order; concatenated along time the pieces equal `decode(latents)`
        (up to float rounding).

        The decoder runs as a chain of steps with a queue of frames between each two. Each call of a step takes
        `chunk` latent frames' worth (times its frame rate) from its queue, or more while its input stays within
        `budget` elements (the coarse steps then see the whole clip at once, as cheap as a whole decode); a step
        runs only while the next queue is short, so memory stays that of a few frames per layer however long
        the clip. A step is told the stream ends once the step before it has ended and its queue is empty.
        """
        if chunk < 1:
            raise ConfigurationError(f"The VAE decode chunk must be at least 1 latent frame, got {chunk}.")
        z = self._un_normalise(latents)
        stages = self.decoder.stages()
        queues: list[torch.Tensor | None] = [z] + [None] * len(stages)
        ended = [False] * len(stages)
        stream = TimeStream()

        def size(i: int) -> int:
            """Frames step `i` takes per call (its queue tells the frame size)."""
            queue = queues[i]
            frame = queue[:, :, :1].numel() if queue is not None else 1
            return max(chunk * (stages[i][1] if i < len(stages) else 1), budget // max(frame, 1))

        while not ended[-1]:
            for i, (step, _) in enumerate(stages):
                queue, following = queues[i], queues[i + 1]
                if ended[i] or queue is None:
                    continue
                if i + 1 < len(stages) and following is not None and following.shape[2] >= size(i + 1):
                    continue  # the next step has enough to do
                n = size(i)
                take, queues[i] = queue[:, :, :n], queue[:, :, n:]
                if i > 0:
                    queues[i] = queues[i].clone()  # a view would keep the whole queue alive
                stream.last = (i == 0 or ended[i - 1]) and queues[i].shape[2] == 0
                if take.shape[2] == 0 and not stream.last:
                    continue
                out = step(take, stream)
                ended[i] = stream.last
                queues[i + 1] = out if following is None else torch.cat([following, out], dim=2)
            if queues[-1] is not None and queues[-1].shape[2]:
                yield unpatchify(queues[-1], self.config.patch_size)
                queues[-1] = None

    def _un_normalise(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 5 or latents.shape[1] != self.config.latent_channels:
            raise ConfigurationError(
                f"The LTX-2 video VAE decodes latents shaped [B, {self.config.latent_channels}, F, H, W], "
                f"got {list(latents.shape)}."
            )
        p = next(self.parameters())
        mean, std = self._stats(p)
        return latents.to(device=p.device, dtype=p.dtype) * std + mean

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ConfigurationError(
                f"The LTX-2 video VAE encodes video shaped [B, 3, T, H, W], got {list(video.shape)}."
            )
        frames, height, width = video.shape[2:]
        if (frames - 1) % self.config.temporal_factor:
            raise frame_count_error(frames, self.config.temporal_factor)
        s = self.config.spatial_factor
        if height % s or width % s:
            raise ConfigurationError(
                f"The LTX-2 video VAE needs height and width divisible by {s}, got {height}x{width}; "
                f"use {height // s * s or s}x{width // s * s or s}."
            )


# ----------------------------------------------------------------------------------------- configuration
def _parse_blocks(entries: Sequence, encoder: bool) -> tuple[Block, ...]:
    """ltx-core block lists: ["res_x", {"num_layers": 4}] / ["compress_all", {"residual": true, "multiplier": 2}]."""
    blocks = []
    for name, params in entries:
        params = {"num_layers": params} if isinstance(params, int) else dict(params or {})
        if name == "res_x":
            blocks.append(Block("res", layers=params["num_layers"]))
            continue
        match = re.fullmatch(r"compress_(space|time|all)(_res)?", name)
        if match is None or bool(match.group(2)) != encoder:
            raise CheckpointError(
                f"The video VAE block '{name}' is not supported: LTX-2 encoders use res_x and "
                "compress_*_res, decoders res_x and compress_*."
            )
        default = 2 if encoder else 1
        blocks.append(
            Block(
                "down" if encoder else "up",
                stride=STRIDES[match.group(1)],
                multiplier=params.get("multiplier", default),
                residual=params.get("residual", False),
            )
        )
    return tuple(blocks)


def _indices(shapes: Mapping[str, Sequence[int]], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for key in shapes if (m := pattern.match(key))})


def _blocks_from_shapes(shapes: Mapping[str, Sequence[int]], part: str, width: int) -> tuple[Block, ...]:
    """Block list from shapes: a resampler's stride follows from its conv width and the next block's width."""
    blocks = []
    indices = _indices(shapes, f"{part}.{'down' if part == 'encoder' else 'up'}_blocks.")
    prefix = f"{part}.{'down' if part == 'encoder' else 'up'}_blocks"
    for i in indices:
        if f"{prefix}.{i}.conv.conv.weight" not in shapes:
            layers = len(_indices(shapes, f"{prefix}.{i}.res_blocks."))
            blocks.append(Block("res", layers=layers))
            continue
        conv = shapes[f"{prefix}.{i}.conv.conv.weight"][0]
        nxt = f"{prefix}.{i + 1}.res_blocks.0.conv1.conv.weight"
        following = shapes[nxt][1] if nxt in shapes else shapes[f"{part}.conv_out.conv.weight"][1]
        if part == "encoder":
            factor, multiplier = following // conv, following // width
        else:
            factor, multiplier = conv // following, width // following
        stride = {4: STRIDES["space"], 2: STRIDES["time"], 8: STRIDES["all"]}.get(factor)
        if stride is None:
            raise CheckpointError(f"Unexpected video VAE resampler width at {prefix}.{i}: {conv} channels.")
        blocks.append(Block("down" if part == "encoder" else "up", stride=stride, multiplier=multiplier))
        width = following
    return tuple(blocks)


def config_from_checkpoint(shapes: Mapping[str, Sequence[int]], header: Mapping | None = None) -> VideoVAEConfig:
    """Config of a video VAE state dict (keys without the `vae.` prefix) and its optional `config["vae"]`.

    Without a header, the decoder's residual flag and padding follow the two released layouts: three
    upsamplers = LTX-2 19B (residual, reflect padding), four = LTX-2.3 (plain, zeros padding).
    """
    if "encoder.conv_in.conv.weight" not in shapes or "decoder.conv_in.conv.weight" not in shapes:
        raise CheckpointError(
            "This is not an LTX-2 video VAE in the official layout (no encoder/decoder conv_in); "
            "pick the LTX-2 checkpoint or its video VAE file."
        )
    if any(k.startswith(("decoder.last_time_embedder.", "decoder.timestep_scale_multiplier")) for k in shapes):
        raise CheckpointError("This video VAE is timestep-conditioned (LTX-Video 0.9.x style); LTX-2 does not use one.")
    header = header or {}
    enc_width = shapes["encoder.conv_in.conv.weight"][0]
    dec_width = shapes["decoder.conv_in.conv.weight"][0]
    latent = shapes["decoder.conv_in.conv.weight"][1]
    patch = round((shapes["encoder.conv_in.conv.weight"][1] / 3) ** 0.5)
    if "encoder_blocks" in header and "decoder_blocks" in header:
        encoder_blocks = _parse_blocks(header["encoder_blocks"], encoder=True)
        decoder_blocks = tuple(reversed(_parse_blocks(header["decoder_blocks"], encoder=False)))
    else:
        encoder_blocks = _blocks_from_shapes(shapes, "encoder", enc_width)
        found = _blocks_from_shapes(shapes, "decoder", dec_width)
        residual = sum(b.kind == "up" for b in found) == 3
        decoder_blocks = tuple(
            Block(b.kind, b.layers, b.stride, b.multiplier, residual and b.kind == "up") for b in found
        )
    legacy = sum(b.kind == "up" for b in decoder_blocks) == 3
    return VideoVAEConfig(
        encoder_blocks=encoder_blocks,
        decoder_blocks=decoder_blocks,
        encoder_width=enc_width,
        decoder_width=dec_width,
        latent_channels=latent,
        patch_size=patch,
        encoder_padding=header.get("encoder_spatial_padding_mode", "zeros"),
        decoder_padding=header.get("spatial_padding_mode", "reflect" if legacy else "zeros"),
        causal_decoder=bool(header.get("causal_decoder", False)),
    )
