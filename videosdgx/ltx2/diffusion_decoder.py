"""LTX-2.5 diffusion video decoder (ltx-core `DiffusionVideoDecoder`, diffusers `LTX2VideoDiffusionDecoderModel`).

Latents (the LTX-2 video VAE's, normalised) -> video in [-1, 1]:
* stages 1-4 (deterministic): linear in, neighbourhood-attention blocks, each stage ending in a pixel-shuffle
  upsampler, into a context volume at `1/patch_size` of the pixel grid;
* stage 5 (diffusion): patchified pixels `x_t` start as noise and are refined in `steps` Euler steps (t from 1
  down), each a stack of AdaLN-modulated neighbourhood-attention blocks reading the context; the model predicts the
  velocity (`v`) or the clean pixels (`x0`).
Borders (ltx-core): the last latent frame is repeated `(stage-1 kernel_t // 2) * 2` more times through stages
1-4 and those frames are cut off the context, so the last real frames are not at the attention's shifted border;
latents smaller than every stage's kernel are padded first (edge-replicated) and the pixels cropped back; a clip
shorter than stage 5's temporal window keeps some ghost frames and repeats its last noise frame over them.
Long clips decode in tiles (`decode_tiles`, ltx-core's tiled decode): stages 1-3 once, stage 4 and every diffusion
step per tile, the tiles blended and yielded a temporal tile at a time (geometry and weights: diffusion_tiling.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from videosdgx.layers.embeddings import timestep_embedding
from videosdgx.layers.norms import RMSNorm
from videosdgx.ltx2.diffusion_decoder_blocks import DiffusionNABlock, Kernel, NABlock, PixelShuffleUp, SharedAdaLN
from videosdgx.ltx2.diffusion_tiling import (Tile, TileSizes, accumulator_dtype, stage4_grid, tile_groups,
                                             weight_sums)
from videosdgx.ltx2.transformer_blocks import TimestepEmbedding
from videosdgx.wan.vae_blocks import patchify, unpatchify


@dataclass(frozen=True)
class DiffusionDecoderConfig:
    """Stage widths / depths (4 deterministic stages + the diffusion stage), windows, upsamplers, sampling."""

    stage_channels: tuple[int, ...] = (1024, 512, 256, 256, 128)
    stage_depths: tuple[int, ...] = (4, 6, 4, 2, 8)
    stage_kernels: tuple[Kernel, ...] = ((3, 7, 7), (3, 7, 7), (3, 5, 5), (3, 5, 5))
    upsamples: tuple[tuple[Kernel, int], ...] = (((1, 2, 2), 2), ((2, 1, 1), 2), ((2, 2, 2), 1), ((2, 2, 2), 2))
    stage5_kernel: Kernel = (3, 7, 7)
    stage5_channels: int | None = None  # default: the context width (stage_channels[-1])
    latent_channels: int = 128
    out_channels: int = 3
    patch_size: int = 4
    head_dim: int = 64
    t_emb_dim: int = 384
    steps: int = 2
    timestep_scale: float = 1.0
    prediction: str = "v"  # "v" or "x0"

    @property
    def temporal_factor(self) -> int:
        return math.prod(stride[0] for stride, _ in self.upsamples)

    @property
    def spatial_factor(self) -> int:
        return math.prod(stride[1] for stride, _ in self.upsamples) * self.patch_size

    @property
    def ghost_frames(self) -> int:
        return self.stage_kernels[0][0] // 2 * 2

    def min_latent_size(self) -> tuple[int, int, int]:
        """Smallest latent (T, H, W) for which every stage's grid holds its window (ltx-core)."""
        mins, scale = [1, 1, 1], [1, 1, 1]
        strides = [stride for stride, _ in self.upsamples]
        for kernel, stride in zip((*self.stage_kernels, self.stage5_kernel), (*strides, (1, 1, 1))):
            mins = [max(m, -(-k // s)) for m, k, s in zip(mins, kernel, scale)]
            scale = [s * r for s, r in zip(scale, stride)]
        return tuple(mins)


class DiffusionVideoDecoder(nn.Module):
    """`decode(latents, generator)` -> video `[B, 3, 8(F-1)+1, 32h, 32w]` in [-1, 1] (normalised latents in)."""

    def __init__(self, config: DiffusionDecoderConfig):
        super().__init__()
        self.config = c = config
        head = c.head_dim
        self.register_buffer("latents_mean", torch.zeros(c.latent_channels))
        self.register_buffer("latents_std", torch.ones(c.latent_channels))
        self.conv_in = nn.Linear(c.latent_channels, c.stage_channels[0])
        self.det_stages = nn.ModuleList(
            nn.ModuleList(NABlock(c.stage_channels[i], kernel, head) for _ in range(c.stage_depths[i]))
            for i, kernel in enumerate(c.stage_kernels))
        self.upsamples = nn.ModuleList(PixelShuffleUp(c.stage_channels[i], stride, reduction)
                                       for i, (stride, reduction) in enumerate(c.upsamples))
        context, width = c.stage_channels[-1], c.stage5_channels or c.stage_channels[-1]
        pixels = c.out_channels * c.patch_size ** 2
        self.t_embedder = TimestepEmbedding(c.t_emb_dim)
        self.conv_in_x_t = nn.Linear(pixels, width)
        self.shared_adaln = SharedAdaLN(width, c.t_emb_dim)
        self.diff_blocks = nn.ModuleList(DiffusionNABlock(width, context, c.stage5_kernel, head)
                                         for _ in range(c.stage_depths[-1]))
        self.norm_out = RMSNorm(width)
        self.conv_out = nn.Linear(width, pixels)

    def unnormalised(self, latents: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int], tuple[int, int, int]]:
        """Normalised latents -> (un-normalised latents padded to the smallest size on the weights' device and
        dtype, the leading pads, the clip's pixel (frames, height, width))."""
        c = self.config
        p = next(self.parameters())
        z = latents.to(device=p.device, dtype=p.dtype)
        size = ((z.shape[2] - 1) * c.temporal_factor + 1, z.shape[3] * c.spatial_factor, z.shape[4] * c.spatial_factor)
        z, pads = pad_to_min(z, c.min_latent_size())
        return z * self.latents_std.view(1, -1, 1, 1, 1) + self.latents_mean.view(1, -1, 1, 1, 1), pads, size

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None,
               steps: int | None = None) -> torch.Tensor:
        """Normalised latents `[B, C, F, h, w]` -> pixels; the noise comes from `generator` (on the latents' device)."""
        c = self.config
        z, pads, (frames, height, width) = self.unnormalised(latents)
        context = self.context(z)
        steps = steps or c.steps
        x = self.noise(z, context, generator, single_x0=steps == 1 and c.prediction == "x0")
        x = self.denoise(context, x, steps)
        top, left = pads[1] * c.spatial_factor, pads[2] * c.spatial_factor
        return x[:, :, :frames, top:top + height, left:left + width]

    @torch.no_grad()
    def decode_tiles(self, latents: torch.Tensor, tiles: TileSizes, generator: torch.Generator | None = None,
                     steps: int | None = None) -> Iterator[torch.Tensor]:
        """Normalised latents -> the video as consecutive frame chunks `[B, 3, f, H, W]` (one per temporal tile),
        with stages 1-3 run once and stage 4 + every diffusion step run per tile, blended (diffusion_tiling.py).
        The starting noise is drawn over the whole clip (kept on the CPU; a single x0 step: per tile) and each
        tile takes its part, so overlapping tiles start from the same pixels; a tile covering the clip decodes
        exactly like `decode`."""
        c = self.config
        z, pads, (frames, height, width) = self.unnormalised(latents)
        full = ((z.shape[2] - 1) * c.temporal_factor + 1, z.shape[3] * c.spatial_factor, z.shape[4] * c.spatial_factor)
        groups = tile_groups(c, stage4_grid(c, tuple(z.shape[2:])), tiles)
        sums = weight_sums(groups, full)
        steps = steps or c.steps
        single_x0 = steps == 1 and c.prediction == "x0"
        noise = None if single_x0 else draw((z.shape[0], c.out_channels, *full), generator, z).cpu()
        features = self.features(z)
        top, left = pads[1] * c.spatial_factor, pads[2] * c.spatial_factor
        carry = None
        for index, group in enumerate(groups):
            span = group[0].pixels[0]
            buffer = torch.zeros((z.shape[0], c.out_channels, span.stop - span.start, *full[1:]), device=z.device,
                                 dtype=accumulator_dtype(z.dtype))
            for tile in group:
                pixels = self.decode_tile(features, tile, noise, generator, steps).to(buffer.dtype)
                weight_t, weight_h, weight_w = (w.to(z.device) for w in tile.weights)
                buffer[:, :, :, tile.pixels[1], tile.pixels[2]] += (
                    pixels * weight_t.view(-1, 1, 1) * weight_h.view(-1, 1) * weight_w)
            if carry is not None:
                buffer[:, :, :carry.shape[2]] += carry
            last = index + 1 == len(groups)
            end = buffer.shape[2] if last else groups[index + 1][0].pixels[0].start - span.start
            carry = None if last else buffer[:, :, end:].clone()
            chunk = buffer[:, :, :min(end, frames - span.start), top:top + height, left:left + width]
            if sums is not None:
                sum_t, sum_h, sum_w = (s.to(z.device) for s in sums)
                chunk = chunk / (sum_t[span.start:span.start + chunk.shape[2]].view(-1, 1, 1)
                                 * sum_h[top:top + height].view(-1, 1) * sum_w[left:left + width])
            if chunk.shape[2] > 0:
                yield chunk.to(z.dtype)

    def decode_tile(self, features: torch.Tensor, tile: Tile, noise: torch.Tensor | None,
                    generator: torch.Generator | None, steps: int) -> torch.Tensor:
        """Stage 4 and the diffusion steps on one tile of stage 4's input -> its pixels `[B, 3, f, h, w]`."""
        c = self.config
        cells_t, cells_h, cells_w = tile.cells
        stop = features.shape[1] if tile.trailing else cells_t.stop
        context = self.stage4(features[:, cells_t.start:stop, cells_h, cells_w], drop_leading=tile.origin,
                              trailing=tile.trailing)
        if noise is None:
            x = draw((features.shape[0], c.out_channels, context.shape[1], context.shape[2] * c.patch_size,
                      context.shape[3] * c.patch_size), generator, context)
        else:
            x = repeat_last(noise[:, :, tile.pixels[0], tile.pixels[1], tile.pixels[2]].to(context), context.shape[1])
        return self.denoise(context, x, steps)[:, :, :tile.pixels[0].stop - tile.pixels[0].start]

    def noise(self, z: torch.Tensor, context: torch.Tensor, generator: torch.Generator | None,
              single_x0: bool) -> torch.Tensor:
        """The starting pixels, drawn as ltx-core does: over the context's frames for a single x0 step, else over
        the clip's frames with the last one repeated where the context is longer (a clip shorter than the window)."""
        c = self.config
        frames = context.shape[1] if single_x0 else min(context.shape[1], (z.shape[2] - 1) * c.temporal_factor + 1)
        shape = (z.shape[0], c.out_channels, frames, context.shape[2] * c.patch_size, context.shape[3] * c.patch_size)
        return repeat_last(draw(shape, generator, z), context.shape[1])

    def context(self, z: torch.Tensor) -> torch.Tensor:
        """Stages 1-4: un-normalised latents `[B, C, F, h, w]` -> context `[B, T, H, W, C]` (ghost frames cut)."""
        return self.stage4(self.features(z))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """Stages 1-3: un-normalised latents `[B, C, F, h, w]` -> stage 4's input `[B, T, H, W, C]`, with the ghost
        frames (the last latent frame repeated `ghost_frames` times) still on."""
        z = torch.cat([z, z[:, :, -1:].expand(-1, -1, self.config.ghost_frames, -1, -1)], dim=2)
        x = self.conv_in(z.permute(0, 2, 3, 4, 1))
        for blocks, upsample in zip(self.det_stages[:-1], self.upsamples[:-1]):
            for block in blocks:
                x = block(x)
            x = upsample(x)
        return x

    def stage4(self, x: torch.Tensor, drop_leading: bool = True, trailing: bool = True) -> torch.Tensor:
        """Stage 4 on (a tile of) its input -> context; `drop_leading`: the tile holds the first frame; `trailing`:
        it holds the ghost frames, cut here down to the clip (but at least stage 5's temporal window)."""
        c = self.config
        for block in self.det_stages[-1]:
            x = block(x)
        x = self.upsamples[-1](x, drop_leading=drop_leading)
        if not trailing:
            return x
        keep = min(x.shape[1], max(x.shape[1] - c.ghost_frames * c.temporal_factor, 1, c.stage5_kernel[0]))
        return x[:, :keep]

    def predict(self, context: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One pass of the diffusion stage on pixels `x [B, 3, F, H, W]` at time `t [B]`."""
        c = self.config
        mlp = self.t_embedder.timestep_embedder
        sinusoid = timestep_embedding(c.timestep_scale * t, mlp.linear_1.in_features, compute_dtype=torch.float32)
        embedded = mlp.linear_2(nn.functional.silu(mlp.linear_1(sinusoid.to(x.dtype))))
        modulation = self.shared_adaln(embedded)
        h = self.conv_in_x_t(patchify(x, c.patch_size).permute(0, 2, 3, 4, 1))
        for block in self.diff_blocks:
            h = block(h, context, modulation)
        h = self.conv_out(self.norm_out(h)).permute(0, 4, 1, 2, 3)
        return unpatchify(h.contiguous(), c.patch_size)

    def denoise(self, context: torch.Tensor, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Euler from t = 1 over `steps` times `1, 1 - 1/steps, ..., 1/steps` to 0 (x0 predictions as velocities;
        the last x0 prediction is the result)."""
        times = torch.linspace(1.0, 1.0 / steps, steps).tolist() + [0.0]
        batch = x.shape[0]
        for now, nxt in zip(times[:-1], times[1:]):
            out = self.predict(context, x, torch.full((batch,), now, device=x.device)).float()
            if self.config.prediction == "x0":
                if nxt == 0.0:
                    return out.to(x.dtype)
                out = (x.float() - out) / now
            x = (x.float() - (now - nxt) * out).to(x.dtype)
        return x


def draw(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of `shape` from `generator` (on its device), moved to `like`'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def repeat_last(x: torch.Tensor, frames: int) -> torch.Tensor:
    """`x [B, C, F, H, W]` with its last frame repeated up to `frames` (ltx-core's `repeat_last` resize)."""
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, frames - x.shape[2], -1, -1)], dim=2)


def pad_to_min(z: torch.Tensor, minimum: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Edge-pad latents up to `minimum` (T at the end; H, W centred, the odd one after); returns the leading pads."""
    leading = [0, 0, 0]
    for axis, size in enumerate(minimum):
        dim, need = axis + 2, size - z.shape[axis + 2]
        if need <= 0:
            continue
        before = 0 if axis == 0 else need // 2
        parts = [z.narrow(dim, 0, 1).expand(*[-1] * dim, before, *[-1] * (4 - dim))] if before else []
        parts += [z, z.narrow(dim, z.shape[dim] - 1, 1).expand(*[-1] * dim, need - before, *[-1] * (4 - dim))]
        z, leading[axis] = torch.cat(parts, dim=dim), before
    return z, tuple(leading)
