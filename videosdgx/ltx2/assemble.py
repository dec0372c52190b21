"""An LTX-2 pipeline from parts loaded one by one (the ComfyUI nodes load each part with its own node and build
one per run), of the class the variant's generation needs, and its sampling with the per-job caches freed after.

    pipe = pipeline_for(variant, dit, video_vae, audio_vae, vocoder, upsampler)   # LTX25Pipeline for LTX-2.5
    video, audio, size, fps = sample_latents(pipe, request, positive, negative)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from videosdgx.job import Progress, VideoRequest
from videosdgx.ltx2.pipeline import LTX2Pipeline, LTX2Size, decode_audio
from videosdgx.ltx2.pipeline25 import LTX25Pipeline, cut_audio
from videosdgx.ltx2.sampler import TextContext
from videosdgx.ltx2.upsampler import LTX2LatentUpsampler
from videosdgx.ltx2.variants import LTX2Variant
from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.runtime.lora_formats import LoraFile

PIPELINES: dict[str, type[LTX2Pipeline]] = {"2.5": LTX25Pipeline}  # by DiT version; others: LTX2Pipeline


def pipeline_for(variant: LTX2Variant, dit, video_vae, audio_vae, vocoder, upsampler: LTX2LatentUpsampler | None = None,
                 stage2_lora: LoraFile | None = None, temporal_upsampler: LTX2LatentUpsampler | None = None,
                 diffusion_decoder=None) -> LTX2Pipeline:
    """The pipeline of `variant`'s generation (Euler-ancestral first stage and the text K/V cache for 2.5) on
    loaded parts, without a text encoder (prompts come encoded). `upsampler`: the spatial x2 latent upscaler of
    two-stage sampling. LTX-2.5 only: `temporal_upsampler`, the temporal x2 one of the `temporal_upscale` option;
    `diffusion_decoder`, whose latent statistics the upscalers use when it is loaded (decoding is its own node's)."""
    _expect_mode(upsampler, "spatial", "upsampler")
    _expect_mode(temporal_upsampler, "temporal", "temporal upsampler")
    pipeline = PIPELINES.get(variant.version, LTX2Pipeline)
    extras = {name: part for name, part in (("temporal_upsampler", temporal_upsampler),
                                            ("diffusion_decoder", diffusion_decoder)) if part is not None}
    if extras and pipeline is LTX2Pipeline:
        raise ConfigurationError(f"{variant.title} takes no {' or '.join(extras)} (LTX-2.5 parts): disconnect it.")
    return pipeline(variant, dit, None, video_vae, audio_vae, vocoder, upsampler, stage2_lora=stage2_lora, **extras)


def _expect_mode(upsampler: LTX2LatentUpsampler | None, mode: str, place: str) -> None:
    if upsampler is not None and upsampler.config.mode != mode:
        raise WrongComponentError(f"The {place} is a {upsampler.config.mode} latent upscaler; this input takes the "
                                  f"{mode} x2 one (a *{mode}-upscaler-x2* file in models/latent_upscale_models).")


def sample_latents(pipe: LTX2Pipeline, request: VideoRequest, positive: TextContext, negative: TextContext | None,
                   progress: Progress | None = None, on_latent: Callable[[torch.Tensor], None] | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, LTX2Size, float]:
    """`pipe.sample`, then the DiT's cached text keys / values are freed (the loaded DiT outlives the run)."""
    try:
        return pipe.sample(request, positive, negative, progress, on_latent)
    finally:
        pipe.dit.clear_text_cache()


def decoded_sound(audio_vae, vocoder, latents: torch.Tensor, frames: int, fps: float, cut: bool) -> dict:
    """ComfyUI AUDIO of sampled sound latents; `cut`: cut to the video's `frames` at `fps` (after the temporal x2
    round, whose 2n - 1 frames last a little less than the n frames the sound was made for)."""
    sound = decode_audio(audio_vae, vocoder, latents)
    return cut_audio(sound, frames, fps) if cut else sound
