"""The official tiled VAE encode and decode of MAGI-1 (magi1.md §5): spatial tiles with linear blending of the
overlap, temporal tiles without overlap. Tiling changes the attention context, so the tile sizes and the blending
order are those of the reference: encode blends each tile into neighbours that were already blended, decode into
the neighbours as decoded."""

from __future__ import annotations

import math

import torch

from videosdgx.magi1.vae import MagiVAE

TILE_PIXELS = 256
TILE_OVERLAP = 0.25


def _blend(a: torch.Tensor, b: torch.Tensor, extent: int, dim: int) -> None:
    """Fade the first `extent` rows of `b` (along `dim`) in from the last rows of `a`, in place."""
    extent = min(a.shape[dim], b.shape[dim], extent)
    if extent == 0:
        return
    w = (torch.arange(extent, dtype=torch.float64) / extent).to(b.dtype).to(b.device)
    w = w.view([-1 if d == dim % b.ndim else 1 for d in range(b.ndim)])
    head = b.narrow(dim, 0, extent)
    head.copy_(a.narrow(dim, a.shape[dim] - extent, extent) * (1 - w) + head * w)


def _tile_starts(size: int, step: int) -> list[int]:
    return [k * step for k in range(math.ceil(size / step))]


def _assemble(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    return torch.cat([torch.cat(row, dim=4) for row in rows], dim=3)


def tiled_encode(vae: MagiVAE, video: torch.Tensor, tile_frames: int = 16, tile_pixels: int = TILE_PIXELS,
                 overlap: float = TILE_OVERLAP) -> torch.Tensor:
    """Posterior mean of `video [B, 3, T, H, W]` encoded tile by tile (the pipeline uses `tile_frames = fps // 2`)."""
    down, down_t = vae.cfg.patch_size, vae.cfg.patch_length
    step = int(tile_pixels * (1 - overlap))
    latent_tile = tile_pixels // down
    extent = int(latent_tile * overlap)
    keep = latent_tile - extent
    slices = []
    for f in _tile_starts(video.shape[2], tile_frames):
        tiles = [[vae.encode(video[:, :, f:f + tile_frames, i:i + tile_pixels, j:j + tile_pixels])
                  for j in _tile_starts(video.shape[4], step)] for i in _tile_starts(video.shape[3], step)]
        for i, row in enumerate(tiles):
            for j, tile in enumerate(row):
                if i > 0:
                    _blend(tiles[i - 1][j], tile, extent, 3)
                if j > 0:
                    _blend(row[j - 1], tile, extent, 4)
        slices.append(_assemble([[t[:, :, : tile_frames // down_t, :keep, :keep] for t in row] for row in tiles]))
    return torch.cat(slices, dim=2)


def tiled_decode(vae: MagiVAE, z: torch.Tensor, tile_frames: int = 16, tile_pixels: int = TILE_PIXELS,
                 overlap: float = TILE_OVERLAP) -> torch.Tensor:
    """Video in [-1, 1] of latent `z [B, 16, t, h, w]` decoded tile by tile; one temporal slice in memory at a time."""
    down, down_t = vae.cfg.patch_size, vae.cfg.patch_length
    latent_tile, latent_frames = tile_pixels // down, tile_frames // down_t
    step = int(latent_tile * (1 - overlap))
    extent = int(latent_tile * down * overlap)
    keep = latent_tile * down - extent
    slices = []
    for f in _tile_starts(z.shape[2], latent_frames):
        decoded = [[vae.decode(z[:, :, f:f + latent_frames, i:i + latent_tile, j:j + latent_tile])
                    for j in _tile_starts(z.shape[4], step)] for i in _tile_starts(z.shape[3], step)]
        rows = []
        for i, row in enumerate(decoded):
            out_row = []
            for j, tile in enumerate(row):
                tile = tile.clone()
                if i > 0:
                    _blend(decoded[i - 1][j], tile, extent, 3)
                if j > 0:
                    _blend(row[j - 1], tile, extent, 4)
                out_row.append(tile[:, :, : latent_frames * down_t, :keep, :keep])
            rows.append(out_row)
        slices.append(_assemble(rows))
    return torch.cat(slices, dim=2)
