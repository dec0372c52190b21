"""Wan conditioning: prompts through UMT5, and the image parts of I2V / FLF2V / TI2V."""

from __future__ import annotations

import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.wan.conditioning import encode_i2v, encode_text, encode_ti2v, size_multiple, valid_size

from ._comfy import io
from .wan_latents import empty_latent, size_inputs, size_output
from .wan_types import CATEGORY, WanClipVisionType, WanConditioning, WanConditioningType, WanTextEncoderType, WanVAEType

WAN22_LATENT_CHANNELS = 48


class WanTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanTextEncode",
            display_name="Wan Text Encode (VideosDGX)",
            category=CATEGORY,
            description="Encodes the prompt and the negative prompt with UMT5.",
            inputs=[
                WanTextEncoderType.Input("text_encoder"),
                io.String.Input("prompt", multiline=True, dynamic_prompts=True, default=""),
                io.String.Input("negative_prompt", multiline=True, dynamic_prompts=True, default="",
                                tooltip="Leave empty for Wan's official negative prompt."),
            ],
            outputs=[WanConditioningType.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, text_encoder, prompt: str, negative_prompt: str) -> io.NodeOutput:
        return io.NodeOutput(WanConditioning(encode_text(text_encoder, prompt, negative_prompt)))


class WanImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanImageToVideo",
            display_name="Wan Image to Video (VideosDGX)",
            category=CATEGORY,
            description="Adds a start image (and an end image for FLF2V) to the conditioning and makes the empty "
                        "latent. Wan2.1 I2V / FLF2V also take CLIP vision; with the Wan 2.2 VAE this is TI2V-5B.",
            inputs=[
                WanConditioningType.Input("conditioning"),
                WanVAEType.Input("vae"),
                io.Image.Input("start_image"),
                *size_inputs(832, 480, 81),
                io.Image.Input("end_image", optional=True, tooltip="Last frame (Wan2.1 FLF2V)."),
                WanClipVisionType.Input("clip_vision", optional=True, tooltip="Required by Wan2.1 I2V and FLF2V."),
            ],
            outputs=[WanConditioningType.Output(display_name="conditioning"), io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, conditioning: WanConditioning, vae, start_image: torch.Tensor, width: int, height: int,
                length: int, end_image: torch.Tensor | None = None, clip_vision=None) -> io.NodeOutput:
        config = vae.config
        size = valid_size(width, height, length, size_multiple(config))
        if config.z_dim == WAN22_LATENT_CHANNELS:
            if end_image is not None or clip_vision is not None:
                raise ConfigurationError(
                    "Wan2.2 TI2V-5B (Wan 2.2 VAE) takes only a start image: disconnect end_image and clip_vision."
                )
            image = encode_ti2v(vae, size, start_image)
        else:
            image = encode_i2v(vae, size, start_image, end_image, clip_vision)
        return size_output(size, WanConditioning(conditioning.text, image), empty_latent(config, size))
