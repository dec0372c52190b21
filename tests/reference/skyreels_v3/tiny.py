"""The tiny SkyReels V3 configurations and inputs shared by make_reference.py and the tests."""

from __future__ import annotations

import torch

SEED = 11
DIT_SEED, VAE_SEED = 1, 2
TEXT_DIM = 48
# Official WanModel arguments (T2V-shaped like V2V-14B; 2 heads of 128 so our loader's head size fits).
DIT = dict(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=256, ffn_dim=192, freq_dim=64,
           text_dim=TEXT_DIM, out_dim=16, num_heads=2, num_layers=2, qk_norm=True, cross_attn_norm=True, eps=1e-6)
VAE_DIM = 8
LATENTS_MEAN = [0.1 * ((i % 5) - 2) for i in range(16)]
LATENTS_STD = [0.5 + 0.1 * i for i in range(16)]
BUCKET = {"0.50": (16, 32)}  # the only aspect-ratio bucket of the extension case: 16x32 pixels, 2x4 latents
EXTENSION_SECONDS = 6  # two chunks (5 s + 1 s): 33 then 9 new latent frames


def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    noisy = torch.randn(1, 16, 3, 4, 6, generator=generator)
    context_latent = torch.randn(1, 16, 2, 4, 6, generator=generator)
    return {
        "noisy": noisy,
        "context_latent": context_latent,
        "text": torch.randn(9, TEXT_DIM, generator=generator),
        "t_shot": torch.tensor([[700.0] * 3 + [0.0] * 2]),
        "t_extension": torch.tensor([[0.0] * 2 + [700.0] * 3]),
        "video_uint8": (torch.rand(27, 20, 44, 3, generator=generator) * 255).to(torch.uint8),
    }


AVATAR_SEED = 3
# Official transformer_a2v.WanModel arguments (its audio projector hard-codes 12 wav2vec2 layers of 768 channels).
AVATAR = dict(model_type="i2v", patch_size=(1, 2, 2), text_len=512, in_dim=36, dim=256, ffn_dim=192, freq_dim=64,
              text_dim=TEXT_DIM, out_dim=16, num_heads=2, num_layers=2, qk_norm=True, cross_attn_norm=True, eps=1e-6,
              audio_window=5, intermediate_dim=16, output_dim=32, context_tokens=4, vae_scale=4,
              norm_input_visual=True, norm_output_audio=True)


def avatar_inputs() -> dict[str, torch.Tensor]:
    """Inputs of the avatar case: 2 latent frames (5 video frames) of 4x6, a CLIP feature map, audio windows."""
    generator = torch.Generator().manual_seed(SEED + 1)
    return {
        "noisy": torch.randn(1, 16, 2, 4, 6, generator=generator),
        "y": torch.randn(1, 20, 2, 4, 6, generator=generator),
        "clip": torch.randn(1, 257, 1280, generator=generator),
        "audio": torch.randn(1, 5, 5, 12, 768, generator=generator),
        "text": torch.randn(9, TEXT_DIM, generator=generator),
        "t": torch.tensor([600.0]),
    }


# The avatar clip chaining: 21-frame clips, 5 motion frames, 4 dropped, 2 steps, both guidances on (3 passes).
CHAIN = dict(frame_num=21, motion_frame=5, drop_frame=4, shift=11.0, sampling_steps=2, text_guide_scale=2.0,
             audio_guide_scale=1.5, seed=5)
CHAIN_FRAMES, SHORT_FRAMES = 50, 15  # speech frames: chained (5 clips) and one clip cut short
PORTRAIT = (16, 32)  # height, width: the one avatar bucket of the chaining case ({"0.50": ([16, 32], 1)})


def chain_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED + 2)
    return {
        "portrait_uint8": (torch.rand(*PORTRAIT, 3, generator=generator) * 255).to(torch.uint8),
        "features": torch.randn(CHAIN_FRAMES, 12, 768, generator=generator),
        "prompt": torch.randn(9, TEXT_DIM, generator=generator),
        "negative": torch.randn(7, TEXT_DIM, generator=generator),
        "connection": torch.randn(5, TEXT_DIM, generator=generator),
        "clip": torch.randn(1, 257, 1280, generator=generator),
    }


def fake_clip(base: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Stands in for CLIP on both sides: tokens that depend on which image `[1, 3, H, W]` they are given."""
    return base * (1 + image.mean()) + image.std()
