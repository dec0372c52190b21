"""LTX-2 loaders: the AV DiT (+ the distilled LoRA for dev two-stage), Gemma 3 with the text projection, the video
VAE, the audio VAE with its vocoder, and the x2 latent upsampler. Each takes the official single-file checkpoint
(everything in one file) or a split per-component file."""

from __future__ import annotations

from dataclasses import replace

import torch

from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.lora_keys import load_ltx2_lora
from videosdgx.ltx2.media_loaders import load_audio_vae, load_upsampler, load_video_vae, load_vocoder
from videosdgx.ltx2.text_encoder import load_ltx2_text_encoder
from videosdgx.ltx2.variants import LTX2_VARIANTS, ltx2_variant
from videosdgx.request import WEIGHT_FORMATS

from ._comfy import io, model_path, register_model_folders
from ._loaders import (NONE, WEIGHT_DTYPES, check_choice, check_file_in, check_files, load_request, model_file,
                       model_file_in, path_in, weight_options)
from ._model_manager import manage
from .ltx2_types import (CATEGORY, LTX2AudioDecoder, LTX2AudioVAEType, LTX2Model, LTX2ModelType,
                         LTX2TextEncoderType, LTX2UpsamplerType, LTX2VAEType)

DIT_FOLDERS = ("checkpoints", "diffusion_models")
VAE_FOLDERS = ("checkpoints", "vae")
PROJECTION_FOLDERS = ("checkpoints", "text_encoders")
CHECKPOINT_TIP = "The LTX-2 single-file checkpoint (ltx-2-19b-*.safetensors, ltx-2.3-22b-*.safetensors)"


def _dtype_choice(weight_dtype: str) -> bool | str:
    return check_choice("weight_dtype", weight_dtype, WEIGHT_DTYPES)


class LTX2Loader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2Loader",
            display_name="LTX-2 Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the LTX-2 19B / LTX-2.3 / LTX-2.5 audio-video DiT (bf16, fp8 or fp4) from the "
                        "single-file checkpoint or a split transformer file (LTX-2.5 ships split files only); for "
                        "dev two-stage sampling also the distilled LoRA.",
            inputs=[
                io.Combo.Input("variant", options=list(LTX2_VARIANTS), default="ltx-2-19b-distilled",
                               tooltip="Distilled (8 steps, no guidance) or dev (guided) of LTX-2 19B, LTX-2.3 or "
                                       "LTX-2.5; must match the checkpoint."),
                model_file_in("ckpt_name", DIT_FOLDERS,
                              f"{CHECKPOINT_TIP}, or a split transformer file from diffusion_models."),
                model_file("distilled_lora", "loras",
                           "Dev models: the distilled LoRA (ltx-2-19b-distilled-lora-384, LTX-2.5: "
                           "ltx-2.5-22b-distilled-lora-450) applied for the refining steps of two-stage sampling; "
                           "none for distilled models.", optional=True),
                *weight_options(),
            ],
            outputs=[LTX2ModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, variant: str, ckpt_name: str, distilled_lora: str, weight_dtype: str = "default",
                        weight_format: str = "default") -> bool | str:
        for name, value, options in (("variant", variant, LTX2_VARIANTS), ("weight_dtype", weight_dtype, WEIGHT_DTYPES),
                                     ("weight_format", weight_format, WEIGHT_FORMATS)):
            if (answer := check_choice(name, value, options)) is not True:
                return answer
        if distilled_lora != NONE and LTX2_VARIANTS[variant].distilled:
            return (f"distilled_lora is for dev models; {variant} is already distilled: set distilled_lora to none "
                    "or choose a dev variant.")
        if (answer := check_file_in(DIT_FOLDERS, ckpt_name)) is not True:
            return answer
        return check_files(lora=("loras", distilled_lora))

    @classmethod
    def execute(cls, variant: str, ckpt_name: str, distilled_lora: str, weight_dtype: str,
                weight_format: str) -> io.NodeOutput:
        chosen = ltx2_variant(variant)
        request = load_request(weight_dtype, weight_format)
        dit = load_dit(path_in(DIT_FOLDERS, ckpt_name), request, expected_version=chosen.version, variant=variant,
                       cross_timestep=chosen.cross_timestep).module
        lora = None if distilled_lora == NONE else load_ltx2_lora(model_path("loras", distilled_lora), request)
        return io.NodeOutput(manage(LTX2Model(chosen, dit, lora), "LTX-2 diffusion model"))


class LTX2TextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2TextEncoderLoader",
            display_name="LTX-2 Gemma Text Encoder Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads Gemma 3 12B (bf16, fp8 or fp4 files stay compressed) and the LTX-2 text projection "
                        "and connectors from the checkpoint (or a separate projections file).",
            inputs=[
                model_file("text_encoder_name", "text_encoders", "Gemma 3 12B (gemma_3_12B_it*.safetensors)."),
                model_file_in("ckpt_name", PROJECTION_FOLDERS,
                              f"{CHECKPOINT_TIP}: its text projection and connectors; or a projections file."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="Compute dtype; default is bf16 on GPUs and fp32 on CPU."),
            ],
            outputs=[LTX2TextEncoderType.Output(display_name="text_encoder")],
        )

    @classmethod
    def validate_inputs(cls, text_encoder_name: str, ckpt_name: str, weight_dtype: str = "default") -> bool | str:
        if (answer := _dtype_choice(weight_dtype)) is not True:
            return answer
        if (answer := check_files(gemma=("text_encoders", text_encoder_name))) is not True:
            return answer
        return check_file_in(PROJECTION_FOLDERS, ckpt_name)

    @classmethod
    def execute(cls, text_encoder_name: str, ckpt_name: str, weight_dtype: str) -> io.NodeOutput:
        encoder = load_ltx2_text_encoder(model_path("text_encoders", text_encoder_name),
                                         path_in(PROJECTION_FOLDERS, ckpt_name), load_request(weight_dtype))
        return io.NodeOutput(encoder)


class LTX2VAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2VAELoader",
            display_name="LTX-2 Video VAE Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the LTX-2 / LTX-2.3 video VAE from the checkpoint or a split video VAE file.",
            inputs=[model_file_in("vae_name", VAE_FOLDERS, f"{CHECKPOINT_TIP}, or a split LTX-2 video VAE file."),
                    io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                                   tooltip="Compute dtype; default is bf16 on GPUs and fp32 on CPU.")],
            outputs=[LTX2VAEType.Output(display_name="vae")],
        )

    @classmethod
    def validate_inputs(cls, vae_name: str, weight_dtype: str = "default") -> bool | str:
        answer = _dtype_choice(weight_dtype)
        return answer if answer is not True else check_file_in(VAE_FOLDERS, vae_name)

    @classmethod
    def execute(cls, vae_name: str, weight_dtype: str) -> io.NodeOutput:
        return io.NodeOutput(manage(load_video_vae(path_in(VAE_FOLDERS, vae_name), load_request(weight_dtype)).module,
                                    "LTX-2 video VAE"))


class LTX2AudioVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2AudioVAELoader",
            display_name="LTX-2 Audio VAE Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the LTX-2 audio VAE and its vocoder (19B HiFi-GAN 24 kHz, 2.3 BigVGAN 48 kHz) from "
                        "the checkpoint or a split audio file; the vocoder runs in fp32.",
            inputs=[model_file_in("audio_vae_name", VAE_FOLDERS, f"{CHECKPOINT_TIP}, or a split LTX-2 audio file."),
                    io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                                   tooltip="Audio VAE compute dtype; default is bf16 on GPUs and fp32 on CPU.")],
            outputs=[LTX2AudioVAEType.Output(display_name="audio_vae")],
        )

    @classmethod
    def validate_inputs(cls, audio_vae_name: str, weight_dtype: str = "default") -> bool | str:
        answer = _dtype_choice(weight_dtype)
        return answer if answer is not True else check_file_in(VAE_FOLDERS, audio_vae_name)

    @classmethod
    def execute(cls, audio_vae_name: str, weight_dtype: str) -> io.NodeOutput:
        path, request = path_in(VAE_FOLDERS, audio_vae_name), load_request(weight_dtype)
        vocoder = load_vocoder(path, replace(request, dtype=torch.float32)).module  # as ltx-core: fp32 waveform
        return io.NodeOutput(manage(LTX2AudioDecoder(load_audio_vae(path, request).module, vocoder), "LTX-2 audio VAE"))


class LTX2UpsamplerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        register_model_folders()  # latent_upscale_models is newer than some ComfyUI releases
        return io.Schema(
            node_id="VideosDGXLTX2UpsamplerLoader",
            display_name="LTX-2 Latent Upsampler Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the x2 spatial latent upsampler of two-stage sampling.",
            inputs=[model_file("upsampler_name", "latent_upscale_models",
                               "ltx-2-spatial-upscaler-x2-1.0.safetensors (LTX-2.5: "
                               "ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors)."),
                    io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                                   tooltip="Compute dtype; default is bf16 on GPUs and fp32 on CPU.")],
            outputs=[LTX2UpsamplerType.Output(display_name="upsampler")],
        )

    @classmethod
    def validate_inputs(cls, upsampler_name: str, weight_dtype: str = "default") -> bool | str:
        answer = _dtype_choice(weight_dtype)
        return answer if answer is not True else check_files(upsampler=("latent_upscale_models", upsampler_name))

    @classmethod
    def execute(cls, upsampler_name: str, weight_dtype: str) -> io.NodeOutput:
        path = model_path("latent_upscale_models", upsampler_name)
        return io.NodeOutput(manage(load_upsampler(path, load_request(weight_dtype)).module, "LTX-2 latent upsampler"))
