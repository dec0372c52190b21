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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from videosdgx.layers.embeddings import timestep_embedding
from videosdgx.layers.norms import RMSNorm
from videosdgx.ltx2.diffusion_decoder_blocks import DiffusionNABlock, Kernel, NABlock, PixelShuffleUp, SharedAdaLN
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

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None,
               steps: int | None = None) -> torch.Tensor:
        """Normalised latents `[B, C, F, h, w]` -> pixels; the noise comes from `generator` (on the latents' device)."""
        c = self.config
        p = next(self.parameters())
        z = latents.to(device=p.device, dtype=p.dtype)
        frames, height, width = ((z.shape[2] - 1) * c.temporal_factor + 1, z.shape[3] * c.spatial_factor,
                                 z.shape[4] * c.spatial_factor)
        z, pads = pad_to_min(z, c.min_latent_size())
        z = z * self.latents_std.view(1, -1, 1, 1, 1) + self.latents_mean.view(1, -1, 1, 1, 1)
        context = self.context(z)
        steps = steps or c.steps
        x = self.noise(z, context, generator, single_x0=steps == 1 and c.prediction == "x0")
        x = self.denoise(context, x, steps)
        top, left = pads[1] * c.spatial_factor, pads[2] * c.spatial_factor
        return x[:, :, :frames, top:top + height, left:left + width]

    def noise(self, z: torch.Tensor, context: torch.Tensor, generator: torch.Generator | None,
              single_x0: bool) -> torch.Tensor:
        """The starting pixels, drawn as ltx-core does: over the context's frames for a single x0 step, else over
        the clip's frames with the last one repeated where the context is longer (a clip shorter than the window)."""
        c = self.config
        frames = context.shape[1] if single_x0 else min(context.shape[1], (z.shape[2] - 1) * c.temporal_factor + 1)
        shape = (z.shape[0], c.out_channels, frames, context.shape[2] * c.patch_size, context.shape[3] * c.patch_size)
        device = generator.device if generator is not None else z.device
        x = torch.randn(shape, generator=generator, device=device, dtype=z.dtype).to(z.device)
        return torch.cat([x, x[:, :, -1:].expand(-1, -1, context.shape[1] - frames, -1, -1)], dim=2)

    def context(self, z: torch.Tensor) -> torch.Tensor:
        """Stages 1-4: un-normalised latents `[B, C, F, h, w]` -> context `[B, T, H, W, C]` (ghost frames cut)."""
        c = self.config
        ghost = c.ghost_frames
        z = torch.cat([z, z[:, :, -1:].expand(-1, -1, ghost, -1, -1)], dim=2)
        x = self.conv_in(z.permute(0, 2, 3, 4, 1))
        for blocks, upsample in zip(self.det_stages, self.upsamples):
            for block in blocks:
                x = block(x)
            x = upsample(x)
        keep = min(x.shape[1], max(x.shape[1] - ghost * c.temporal_factor, 1, c.stage5_kernel[0]))
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
