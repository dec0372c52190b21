"""Socket types of the LTX-2 node family and what travels on them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from videosdgx.ltx2.sampler import TextContext
from videosdgx.ltx2.variants import LTX2Variant
from videosdgx.runtime.lora_formats import LoraFile

from ._comfy import io

CATEGORY = "VideosDGX/LTX-2"
LATENT_FORMAT = "LTXV"  # core's comfy.latent_formats.LTXV: the same 128-channel normalised video latents


@dataclass
class LTX2Model:
    """The loaded AV DiT, its variant (sampling defaults) and, for dev two-stage, the distilled LoRA."""

    variant: LTX2Variant
    dit: nn.Module
    stage2_lora: LoraFile | None = None


@dataclass
class LTX2Conditioning:
    """Connector outputs of the prompt and of the negative prompt (used by dev models' guidance)."""

    positive: TextContext
    negative: TextContext


@dataclass
class LTX2AudioDecoder:
    """The audio VAE (latents -> mel) and the vocoder (mel -> waveform)."""

    audio_vae: nn.Module
    vocoder: nn.Module


@dataclass
class LTX2Latents:
    """Sampled video `[1, C, F, H, W]` and audio `[1, C, T, M]` latents and the frame rate they were made for;
    `cut_sound`: the sound outlasts the video (after LTX-2.5's temporal x2 round) and is cut to it when decoded."""

    video: torch.Tensor
    audio: torch.Tensor
    fps: float
    cut_sound: bool = False


LTX2ModelType = io.Custom("VDGX_LTX2_MODEL")
LTX2TextEncoderType = io.Custom("VDGX_LTX2_TEXT_ENCODER")
LTX2ConditioningType = io.Custom("VDGX_LTX2_CONDITIONING")
LTX2VAEType = io.Custom("VDGX_LTX2_VAE")
LTX2AudioVAEType = io.Custom("VDGX_LTX2_AUDIO_VAE")
LTX2UpsamplerType = io.Custom("VDGX_LTX2_UPSAMPLER")
LTX2LatentType = io.Custom("VDGX_LTX2_LATENT")
LTX25VideoDecoderType = io.Custom("VDGX_LTX25_VIDEO_DECODER")  # the diffusion video decoder
LTX25DurationHeadType = io.Custom("VDGX_LTX25_DURATION_HEAD")
