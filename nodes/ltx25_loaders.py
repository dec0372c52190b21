"""LTX-2.5 loaders: Gemma 4 with the bundled projections (the LTX-2 text encoder socket, so LTX-2 Text Encode
takes it), the diffusion video decoder of the video VAE file, and the duration head. The 2.5 DiT, conv video VAE
and audio VAE load with the LTX-2 loaders."""

from __future__ import annotations

from dataclasses import replace

import torch

from videosdgx.ltx2.duration_head25 import load_duration_head
from videosdgx.ltx2.media_loaders import load_diffusion_decoder
from videosdgx.ltx2.text_conditioner import read_transformer_config
from videosdgx.ltx2.text_encoder25 import load_ltx25_text_encoder
from videosdgx.text.gemma3_tokenizer import GEMMA_TOKENIZER_FILES

from ._comfy import io, model_path, named_files, register_model_folders
from ._loaders import (NONE, WEIGHT_DTYPES, check_choice, check_file_in, check_files, first_problem, load_request,
                       model_file, model_file_in, path_in)
from ._model_manager import manage
from .ltx2_loaders import DIT_FOLDERS
from .ltx2_types import CATEGORY, LTX25DurationHeadType, LTX25VideoDecoderType, LTX2TextEncoderType

AUTO = "auto"
TEXT_ENCODER_TIP = "Gemma 4 12B with the LTX-2.5 projections bundled (gemma4-12b-with-proj-ltx-2.5-*.safetensors)."


def _dtype_input() -> io.Combo.Input:
    return io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                          tooltip="Compute dtype; default is bf16 on GPUs and fp32 on CPU.")


class LTX25TextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX25TextEncoderLoader",
            display_name="LTX-2.5 Gemma 4 Text Encoder Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads LTX-2.5's text encoder: Gemma 4 12B, its text projections and connectors, all in one "
                        "file. Connect it to LTX-2 Text Encode.",
            inputs=[
                model_file("text_encoder_name", "text_encoders", TEXT_ENCODER_TIP),
                io.Combo.Input("tokenizer", options=[AUTO, *named_files("text_encoders", GEMMA_TOKENIZER_FILES)],
                               default=AUTO, tooltip="Gemma 4's tokenizer.json or tokenizer.model (the bundle "
                                                     "installs ltx-2.5-gemma4/tokenizer.json); auto: the one next "
                                                     "to the text encoder file."),
                model_file_in("dit_name", DIT_FOLDERS, "The LTX-2.5 transformer file: the connectors' settings are "
                                                       "read from it when the text encoder file embeds none.",
                              optional=True),
                _dtype_input(),
            ],
            outputs=[LTX2TextEncoderType.Output(display_name="text_encoder")],
        )

    @classmethod
    def validate_inputs(cls, text_encoder_name: str, tokenizer: str = AUTO, dit_name: str = NONE,
                        weight_dtype: str = "default") -> bool | str:
        return first_problem(
            check_choice("weight_dtype", weight_dtype, WEIGHT_DTYPES),
            check_files(text_encoder=("text_encoders", text_encoder_name)),
            True if tokenizer == AUTO else check_files(tokenizer=("text_encoders", tokenizer)),
            check_file_in(DIT_FOLDERS, dit_name))

    @classmethod
    def execute(cls, text_encoder_name: str, tokenizer: str, dit_name: str, weight_dtype: str) -> io.NodeOutput:
        path = model_path("text_encoders", text_encoder_name)
        settings = read_transformer_config(path) or (
            read_transformer_config(path_in(DIT_FOLDERS, dit_name)) if dit_name != NONE else {})
        encoder = load_ltx25_text_encoder(path, load_request(weight_dtype), settings=settings or None,
                                          tokenizer=None if tokenizer == AUTO else model_path("text_encoders",
                                                                                              tokenizer))
        return io.NodeOutput(encoder)


class LTX25VideoDecoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX25VideoDecoderLoader",
            display_name="LTX-2.5 Diffusion Video Decoder Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads the diffusion decoder of LTX-2.5's video VAE (ltx-2.5-video-vae-*.safetensors, not "
                        "the -conv file), LTX-2.5's default decoder; the conv VAE still encodes images.",
            inputs=[model_file("decoder_name", "vae", "ltx-2.5-video-vae-bf16.safetensors."), _dtype_input()],
            outputs=[LTX25VideoDecoderType.Output(display_name="video_decoder")],
        )

    @classmethod
    def validate_inputs(cls, decoder_name: str, weight_dtype: str = "default") -> bool | str:
        return first_problem(check_choice("weight_dtype", weight_dtype, WEIGHT_DTYPES),
                             check_files(decoder=("vae", decoder_name)))

    @classmethod
    def execute(cls, decoder_name: str, weight_dtype: str) -> io.NodeOutput:
        decoder = load_diffusion_decoder(model_path("vae", decoder_name), load_request(weight_dtype)).module
        return io.NodeOutput(manage(decoder, "LTX-2.5 diffusion video decoder"))


class LTX25DurationHeadLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        register_model_folders()  # model_patches is newer than some ComfyUI releases
        return io.Schema(
            node_id="VideosDGXLTX25DurationHeadLoader",
            display_name="LTX-2.5 Duration Head Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads LTX-2.5's duration head (a few MB, float32): it predicts the length of the shot a "
                        "prompt describes (LTX-2.5 Length).",
            inputs=[model_file("duration_head_name", "model_patches", "ltx-2.5-duration-head-bf16.safetensors.")],
            outputs=[LTX25DurationHeadType.Output(display_name="duration_head")],
        )

    @classmethod
    def validate_inputs(cls, duration_head_name: str) -> bool | str:
        return check_files(duration_head=("model_patches", duration_head_name))

    @classmethod
    def execute(cls, duration_head_name: str) -> io.NodeOutput:
        request = replace(load_request(), dtype=torch.float32)  # as the pipeline: a tiny head, float32
        return io.NodeOutput(load_duration_head(model_path("model_patches", duration_head_name), request).module)
