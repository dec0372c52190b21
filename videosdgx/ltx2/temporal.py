"""Pieces of the temporal x2 refinement (LTX-2.5, `LTX25Pipeline`): the DiT with its sound held as clean context,
and the sound's latents laid out for the refined clip's time base.

Constants from ltx-pipelines `dfr_pipeline.py` @ 400fd310 (diffusers `pipelines/ltx2/utils.py` holds the same):
the round denoises `DISTILLED_SIGMAS[4:]` with Euler-ancestral at eta 0.5, its noise seeded with `seed + 1000`
(round 1, tile 0), and conditions the DiT at no more than 60 fps (RoPE time is `frame / fps`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from videosdgx.ltx2.schedule import DISTILLED_SIGMAS

TEMPORAL_SIGMAS = torch.tensor(DISTILLED_SIGMAS[4:])  # 0.975 ... 0: 4 steps
TEMPORAL_ETA = 0.5
TEMPORAL_NOISE_SEED_OFFSET = 1000
MAX_CONDITIONING_FPS = 60.0


class FrozenAudio:
    """The DiT with its audio stream held clean: audio tokens at timestep / sigma 0 (context for the video's
    audio-to-video attention, as diffusers' `LTX2DFRTemporalRefinePipeline(freeze_audio)`), audio velocity 0, so an
    Euler step leaves the sound's latents unchanged."""

    def __init__(self, dit: torch.nn.Module):
        self.dit = dit

    def __call__(self, video, audio, perturbation=None) -> tuple[torch.Tensor, torch.Tensor]:
        held = replace(audio, timesteps=torch.zeros_like(audio.timesteps), sigma=torch.zeros_like(audio.sigma))
        velocity, audio_velocity = self.dit(video, held, perturbation)
        return velocity, torch.zeros_like(audio_velocity)

    def __getattr__(self, name: str):  # the DiT's own attributes (its weight source in error messages)
        return getattr(self.dit, name)


def conditioning_fps(playback_fps: float) -> float:
    """The frame rate the DiT is conditioned at (ltx-pipelines: `min(fps, 60)`)."""
    return min(playback_fps, MAX_CONDITIONING_FPS)


def audio_context(audio: torch.Tensor, tokens: int, fraction: float) -> torch.Tensor:
    """`audio` [B, C, T, M] resampled (linearly along T) to `tokens` latents covering its first `fraction` of time
    (the refined clip is `(2n - 1) / 2n` of the sampled one's duration)."""
    source = audio.shape[2]
    position = (torch.arange(tokens, dtype=torch.float32, device=audio.device) * (fraction * source / tokens))
    position = position.clamp(0, source - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=source - 1)
    weight = (position - low)[:, None].to(audio.dtype)
    return audio[:, :, low] * (1 - weight) + audio[:, :, high] * weight
