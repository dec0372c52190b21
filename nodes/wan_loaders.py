"""Wan loaders: diffusion model (one file, or the two Wan2.2 A14B experts), UMT5 text encoder, VAE, CLIP vision."""

from __future__ import annotations

import torch

from videosdgx.runtime.device import default_dtype
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.wan.loaders import load_clip_vision, load_dit, load_text_encoder, load_vae
from videosdgx.wan.variants import expert_boundary

from ._comfy import byte_progress, io, missing_model, model_names, model_path, torch_device
from ._model_manager import make_room, manage
from .wan_types import CATEGORY, WanClipVisionType, WanExperts, WanModelType, WanTextEncoderType, WanVAEType

NONE = "none"
WEIGHT_DTYPES = {"default": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
WEIGHT_FORMATS = ("default", "fp8_e4m3fn")


def load_request(weight_dtype: str = "default", weight_format: str = "default") -> LoadRequest:
    """Load onto ComfyUI's device, in the chosen dtype (default: bf16 on GPUs, fp32 on CPU), showing byte progress."""
    device = torch_device()
    dtype = WEIGHT_DTYPES[weight_dtype] or default_dtype(device)
    return LoadRequest(dtype=dtype, device=device, weight_format=weight_format, progress=byte_progress(),
                       make_room=make_room)


class WanModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanModelLoader",
            display_name="Wan Model Loader",
            category=CATEGORY,
            description="Loads a Wan 2.1 / 2.2 diffusion model (any published layout, fp16/bf16/fp8).",
            inputs=[
                io.Combo.Input("model_name", options=model_names("diffusion_models"),
                               tooltip="Wan diffusion model (for Wan2.2 A14B: the high-noise expert)."),
                io.Combo.Input("low_noise_model", options=[NONE, *model_names("diffusion_models")], default=NONE,
                               tooltip="Wan2.2 A14B only: the low-noise expert. none for every other model."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="Compute dtype; default is bf16 on GPUs and fp32 on CPU."),
                io.Combo.Input("weight_format", options=list(WEIGHT_FORMATS), default="default",
                               tooltip="fp8_e4m3fn stores the Linear weights in fp8 (half the memory of bf16)."),
            ],
            outputs=[WanModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str, low_noise_model: str) -> bool | str:
        found = missing_model("diffusion_models", model_name)
        return missing_model("diffusion_models", low_noise_model) if found is True else found

    @classmethod
    def execute(cls, model_name: str, low_noise_model: str, weight_dtype: str, weight_format: str) -> io.NodeOutput:
        names = (model_name,) if low_noise_model == NONE else (model_name, low_noise_model)
        models = tuple(load_dit(model_path("diffusion_models", name), load_request(weight_dtype, weight_format)).module
                       for name in names)
        boundary = expert_boundary(models[0].cfg.model_type) if len(models) == 2 else None
        return io.NodeOutput(manage(WanExperts(models, boundary, names), "Wan diffusion model"))


class WanTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanTextEncoderLoader",
            display_name="Wan Text Encoder Loader",
            category=CATEGORY,
            description="Loads the UMT5-XXL text encoder of Wan (Comfy-Org or official file) and its tokenizer.",
            inputs=[io.Combo.Input("text_encoder_name", options=model_names("text_encoders"))],
            outputs=[WanTextEncoderType.Output(display_name="text_encoder")],
        )

    @classmethod
    def validate_inputs(cls, text_encoder_name: str) -> bool | str:
        return missing_model("text_encoders", text_encoder_name)

    @classmethod
    def execute(cls, text_encoder_name: str) -> io.NodeOutput:
        encoder = load_text_encoder(model_path("text_encoders", text_encoder_name), load_request())
        return io.NodeOutput(manage(encoder, "Wan text encoder"))


class WanVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanVAELoader",
            display_name="Wan VAE Loader",
            category=CATEGORY,
            description="Loads the Wan 2.1 VAE (16 channels) or the Wan 2.2 VAE (48 channels, TI2V-5B only).",
            inputs=[io.Combo.Input("vae_name", options=model_names("vae"))],
            outputs=[WanVAEType.Output(display_name="vae")],
        )

    @classmethod
    def validate_inputs(cls, vae_name: str) -> bool | str:
        return missing_model("vae", vae_name)

    @classmethod
    def execute(cls, vae_name: str) -> io.NodeOutput:
        return io.NodeOutput(manage(load_vae(model_path("vae", vae_name), load_request()).module, "Wan VAE"))


class WanCLIPVisionLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanCLIPVisionLoader",
            display_name="Wan CLIP Vision Loader",
            category=CATEGORY,
            description="Loads CLIP ViT-H/14 (clip_vision_h), the image encoder of Wan2.1 I2V and FLF2V.",
            inputs=[io.Combo.Input("clip_name", options=model_names("clip_vision"))],
            outputs=[WanClipVisionType.Output(display_name="clip_vision")],
        )

    @classmethod
    def validate_inputs(cls, clip_name: str) -> bool | str:
        return missing_model("clip_vision", clip_name)

    @classmethod
    def execute(cls, clip_name: str) -> io.NodeOutput:
        module = load_clip_vision(model_path("clip_vision", clip_name), load_request()).module
        return io.NodeOutput(manage(module, "CLIP vision"))
