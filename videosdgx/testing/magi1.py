"""Tiny MAGI-1 model files in the official layouts (magi1.md §2, §9), for tests and `--demo`."""

from __future__ import annotations

import torch

from videosdgx.magi1.config import MagiDiTConfig
from videosdgx.magi1.transformer import MagiDiT
from videosdgx.magi1.vae import MagiVAE, MagiVAEConfig
from videosdgx.testing.files import random_like_state_dict

CAPTION_DIM = 32  # the tiny T5's width


def tiny_dit_config(style: str = "4.5B") -> MagiDiTConfig:
    """2 layers, width 128, 8 query heads over 2 KV groups of 16; "24B" adds SwiGLU, 32 input channels, x0.1."""
    common = dict(layers=2, dim=128, ffn_dim=256, heads=8, kv_heads=2, head_dim=16, caption_dim=CAPTION_DIM,
                  caption_length=800, cond_dim=32)
    if style == "24B":
        return MagiDiTConfig(**common, in_channels=32, out_channels=32, gated_mlp=True, x_rescale=0.1)
    return MagiDiTConfig(**common)


def dit_state(cfg: MagiDiTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random DiT weights under the official key names (norm weights non-zero, so the +1 is exercised)."""
    with torch.device("meta"):
        module = MagiDiT(cfg)
    return random_like_state_dict(module, seed, std=0.2)


def dit_inputs(seed: int, chunks: int) -> dict[str, torch.Tensor]:
    """Seeded inputs of a 4-chunk tiny DiT forward in the reference's layout: latent `x [1,16,2n,8,8]`, `t [1,n]`,
    captions `y [n,1,800,32]` and masks `[n,1,800]` of distinct lengths (one full, one a single token)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 800, 1, 33, 50, 12][:chunks])
    mask = (torch.arange(800)[None] < lengths[:, None]).float()
    return {
        "x": torch.randn(1, 16, 2 * chunks, 8, 8, generator=g),
        "t": torch.rand(1, chunks, generator=g),
        "y": torch.randn(chunks, 1, 800, CAPTION_DIM, generator=g),
        "mask": mask[:, None],
    }


TINY_VAE = MagiVAEConfig(video_size=16, video_length=8, patch_size=8, patch_length=4, z_chans=16, embed_dim=256,
                         depth=2, num_heads=4)


def tiny_vae_ddconfig() -> dict:
    """The tiny VAE's `ddconfig` with the released model's switches (magi1.md §5)."""
    c = TINY_VAE
    return dict(video_size=c.video_size, video_length=c.video_length, patch_size=c.patch_size,
                patch_length=c.patch_length, in_chans=3, z_chans=c.z_chans, double_z=True, embed_dim=c.embed_dim,
                depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=True, with_cls_token=True,
                norm_code=False, ln_in_attn=True, conv_last_layer=True, use_rope=False, use_final_proj=False)


def vae_state(seed: int = 0) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        module = MagiVAE(TINY_VAE)
    return random_like_state_dict(module, seed, std=0.05)


def special_tokens_arrays(dim: int = CAPTION_DIM, seed: int = 0) -> dict:
    """`special_tokens.npz` contents at width `dim` (the release: 4096), float64 as published."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"caption_token": rng.standard_normal((1, dim)), "logo_token": rng.standard_normal((1, dim)),
            "other_tokens": rng.standard_normal((100, dim))}


def pipeline_inputs(prefix_frames: int = 0) -> dict:
    """A 2-chunk tiny generation (16 frames of 64x64, chunk width 2): caption `[1, 1, 800, 32]` with 9 valid
    tokens, its mask, an optional clean latent prefix `[1, 16, P, 8, 8]`, and the noise seed."""
    g = torch.Generator().manual_seed(11)
    caption = torch.randn(1, 1, 800, CAPTION_DIM, generator=g)
    mask = (torch.arange(800) < 9).long()[None]
    prefix = torch.randn(1, 16, prefix_frames, 8, 8, generator=g) if prefix_frames else None
    return {"caption": caption, "mask": mask, "prefix": prefix, "seed": 7}
