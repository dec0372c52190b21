"""MAGI-1 VAE (magi1.md §5): a transformer VAE, 4x8x8 patches, 16 latent channels; official key names.

Encoder: Conv3d patchify -> cls + position table -> ViT blocks -> LayerNorm -> Linear to mean||logvar.
Decoder: Linear per latent token -> cls + position table -> ViT blocks -> LayerNorm -> unpatchify -> Conv3d 3x3x3.
Attention normalises q, k and v per head without parameters (`(u - mean) / (std + 1e-5)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.runtime.attention import attention
from videosdgx.runtime.errors import CheckpointError

SCALE_FACTOR = 0.18215


@dataclass(frozen=True)
class MagiVAEConfig:
    video_size: int = 256
    video_length: int = 16
    patch_size: int = 8
    patch_length: int = 4
    in_chans: int = 3
    z_chans: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> tuple[int, int, int]:
        """The position table's (t, h, w) grid; other latent sizes interpolate it."""
        s = self.video_size // self.patch_size
        return self.video_length // self.patch_length, s, s

    @classmethod
    def from_json(cls, path: str | Path) -> "MagiVAEConfig":
        """Read `config.json` (`{"_class_name": "ViTVAE", "ddconfig": {...}}`); unknown fields are ignored."""
        try:
            dd = json.loads(Path(path).read_text())["ddconfig"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} is not a MAGI-1 VAE config.json ({exc}).") from None
        unsupported = {k: dd[k] for k in ("double_z", "ln_in_attn", "with_cls_token", "conv_last_layer")
                       if k in dd and not dd[k]} | {k: dd[k] for k in ("use_rope", "norm_code", "use_final_proj")
                                                     if dd.get(k)}
        if unsupported:
            raise CheckpointError(f"{path}: VAE options {unsupported} differ from the released MAGI-1 VAE.")
        return cls(**{k: dd[k] for k in cls.__dataclass_fields__ if k in dd})


def config_from_shapes(shapes: Mapping[str, Sequence[int]], base: MagiVAEConfig | None = None) -> MagiVAEConfig:
    """Fill the width, depth, patch and latent size from the tensors; heads, size and length from `base`."""
    base = base or MagiVAEConfig()
    embed, chans, pt, p, _ = shapes["encoder.patch_embed.proj.weight"]
    depth = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("encoder.blocks."))
    mlp = shapes["encoder.blocks.0.mlp.fc1.weight"][0] / embed
    return MagiVAEConfig(video_size=base.video_size, video_length=base.video_length, patch_size=p, patch_length=pt,
                         in_chans=chans, z_chans=shapes["decoder.proj_in.weight"][1], embed_dim=embed, depth=depth,
                         num_heads=base.num_heads, mlp_ratio=mlp)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, -1))
        qkv = (qkv - qkv.mean(-1, keepdim=True)) / (qkv.std(-1, keepdim=True, unbiased=False) + 1e-5)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        return self.proj(attention(q, k, v).transpose(1, 2).flatten(2))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        kernel = (cfg.patch_length, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel, kernel)


class _ViT(nn.Module):
    """Shared trunk: cls token, position table (interpolated to the latent grid), blocks, final LayerNorm."""

    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        self.cfg = cfg
        t, h, w = cfg.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + t * h * w, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def position_table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        if grid == self.cfg.grid:
            return self.pos_embed
        table = self.pos_embed[:, 1:].reshape(1, *self.cfg.grid, -1).permute(0, 4, 1, 2, 3)
        table = F.interpolate(table, size=grid, mode="trilinear", align_corners=False)
        return torch.cat([self.pos_embed[:, :1], table.permute(0, 2, 3, 4, 1).flatten(1, 3)], dim=1)

    def trunk(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        x = x + self.position_table(grid).to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1:]


class Encoder(_ViT):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__(cfg)
        self.patch_embed = PatchEmbed(cfg)
        self.last_layer = nn.Linear(cfg.embed_dim, 2 * cfg.z_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Video `[B, 3, T, H, W]` in [-1, 1] -> moments `[B, 2*z, T/4, H/8, W/8]` (mean, then log-variance)."""
        x = self.patch_embed.proj(x)
        grid = tuple(x.shape[2:])
        out = self.last_layer(self.trunk(x.flatten(2).transpose(1, 2), grid))
        return out.unflatten(1, grid).permute(0, 4, 1, 2, 3)


class Decoder(_ViT):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__(cfg)
        self.proj_in = nn.Linear(cfg.z_chans, cfg.embed_dim)
        self.unpatch_channels = cfg.embed_dim // (cfg.patch_size ** 2 * cfg.patch_length)
        self.last_layer = nn.Conv3d(self.unpatch_channels, 3, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Latent `[B, z, t, h, w]` -> video `[B, 3, 4t, 8h, 8w]`."""
        grid = tuple(z.shape[2:])
        x = self.trunk(self.proj_in(z.flatten(2).transpose(1, 2)), grid)
        p, pt = self.cfg.patch_size, self.cfg.patch_length
        x = rearrange(x, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=grid[0], h=grid[1], w=grid[2],
                      pt=pt, ph=p, pw=p)
        return self.last_layer(x)


class MagiVAE(nn.Module):
    def __init__(self, cfg: MagiVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Posterior mean of `[B, 3, T, H, W]` (T a multiple of 4, or a single image: encoded as 4 equal frames)."""
        if video.shape[2] == 1:
            return self.encoder(video.expand(-1, -1, self.cfg.patch_length, -1, -1))[:, : self.cfg.z_chans, :1]
        return self.encoder(video)[:, : self.cfg.z_chans]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Video in [-1, 1]; a single latent frame decodes to one video frame (the first of its 4), as officially."""
        video = self.decoder(z)
        return video[:, :, :1] if z.shape[2] == 1 else video
