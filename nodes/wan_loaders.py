"""Wan loaders: diffusion model (one file, or the two Wan2.2 A14B experts), UMT5 text encoder, VAE, CLIP vision."""

from __future__ import annotations

from videosdgx.request import WEIGHT_FORMATS
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.wan.loaders import load_clip_vision, load_dit, load_text_encoder, load_vae
from videosdgx.wan.variants import expert_boundary

from ._comfy import io, model_path
from ._loaders import NONE, WEIGHT_DTYPES, check_choice, check_files, load_request, model_file, weight_options
from .wan_types import CATEGORY, WanClipVisionType, WanExperts, WanModelType, WanTextEncoderType, WanVAEType


class WanModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanModelLoader",
            display_name="Wan Model Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads a Wan 2.1 / 2.2 diffusion model (any published layout, fp16/bf16/fp8).",
            inputs=[
                model_file("model_name", "diffusion_models",
                           "Wan diffusion model (for Wan2.2 A14B: the high-noise expert)."),
                model_file("low_noise_model", "diffusion_models",
                           "Wan2.2 A14B only: the low-noise expert. none for every other model.", optional=True),
                *weight_options(),
            ],
            outputs=[WanModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str, low_noise_model: str, weight_dtype: str = "default",
                        weight_format: str = "default") -> bool | str:
        for name, value, options in (("weight_dtype", weight_dtype, WEIGHT_DTYPES),
                                     ("weight_format", weight_format, WEIGHT_FORMATS)):
            if (answer := check_choice(name, value, options)) is not True:
                return answer
        if low_noise_model == model_name:
            return f"low_noise_model is the same file as model_name ({model_name}); pick the low-noise expert or none."
        return check_files(model=("diffusion_models", model_name), low=("diffusion_models", low_noise_model))

    @classmethod
    def execute(cls, model_name: str, low_noise_model: str, weight_dtype: str, weight_format: str) -> io.NodeOutput:
        names = (model_name,) if low_noise_model == NONE else (model_name, low_noise_model)
        models = tuple(load_dit(model_path("diffusion_models", name), load_request(weight_dtype, weight_format)).module
                       for name in names)
        if len(models) == 2 and models[0].cfg != models[1].cfg:
            raise ConfigurationError(
                f"{model_name} and {low_noise_model} are not the two experts of one Wan2.2 A14B model (their "
                "configurations differ); load the high- and low-noise files of the same release."
            )
        boundary = expert_boundary(models[0].cfg.model_type) if len(models) == 2 else None
        return io.NodeOutput(WanExperts(models, boundary, names))


class WanTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanTextEncoderLoader",
            display_name="Wan Text Encoder Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the UMT5-XXL text encoder of Wan (Comfy-Org or official file) and its tokenizer.",
            inputs=[model_file("text_encoder_name", "text_encoders", "UMT5-XXL encoder (Comfy-Org or official file).")],
            outputs=[WanTextEncoderType.Output(display_name="text_encoder")],
        )

    @classmethod
    def validate_inputs(cls, text_encoder_name: str) -> bool | str:
        return check_files(text_encoder=("text_encoders", text_encoder_name))

    @classmethod
    def execute(cls, text_encoder_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_text_encoder(model_path("text_encoders", text_encoder_name), load_request()))


class WanVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanVAELoader",
            display_name="Wan VAE Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the Wan 2.1 VAE (16 channels) or the Wan 2.2 VAE (48 channels, TI2V-5B only).",
            inputs=[model_file("vae_name", "vae", "wan_2.1_vae for every Wan model but TI2V-5B (wan2.2_vae).")],
            outputs=[WanVAEType.Output(display_name="vae")],
        )

    @classmethod
    def validate_inputs(cls, vae_name: str) -> bool | str:
        return check_files(vae=("vae", vae_name))

    @classmethod
    def execute(cls, vae_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_vae(model_path("vae", vae_name), load_request()).module)


class WanCLIPVisionLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanCLIPVisionLoader",
            display_name="Wan CLIP Vision Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads CLIP ViT-H/14 (clip_vision_h), the image encoder of Wan2.1 I2V and FLF2V.",
            inputs=[model_file("clip_name", "clip_vision", "clip_vision_h (Wan2.1 I2V and FLF2V).")],
            outputs=[WanClipVisionType.Output(display_name="clip_vision")],
        )

    @classmethod
    def validate_inputs(cls, clip_name: str) -> bool | str:
        return check_files(clip=("clip_vision", clip_name))

    @classmethod
    def execute(cls, clip_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_clip_vision(model_path("clip_vision", clip_name), load_request()).module)
