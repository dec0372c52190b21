"""MAGI-1 nodes: loaders (sharded DiT, T5 v1.1 + special tokens, VAE), prompt list encoding, and the chunk sampler
that denoises, decodes and reports chunk after chunk (progress per step, Cancel between steps)."""

from __future__ import annotations

from pathlib import Path

import torch

from videosdgx.job import VideoRequest
from videosdgx.magi1.loaders import load_dit, load_text_encoder, load_vae
from videosdgx.magi1.memory import sampling_phase_activations
from videosdgx.magi1.pipeline import sample_chunks
from videosdgx.magi1.special_tokens import load_special_tokens
from videosdgx.magi1.variants import MAGI1_VARIANTS
from videosdgx.plan import Size
from videosdgx.runtime.memory import check_memory

from ._comfy import check_interrupt, io, model_path, progress, torch_device
from ._loaders import WEIGHT_DTYPES, check_choice, check_files, load_request, model_file
from ._model_manager import manage, use
from .magi1_types import (CATEGORY, MagiConditioning, MagiConditioningType, MagiModel, MagiModelType, MagiText,
                          MagiTextEncoderType, MagiVAEType)

SPECIAL_TOKENS = "magi1/special_tokens.npz"  # in text_encoders, where install.py puts it
T5_INDEX = "pytorch_model.bin.index.json"
MAX_SEED = 0xFFFFFFFFFFFFFFFF


class MagiModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXMagiModelLoader", display_name="MAGI-1 Model Loader (VideosDGX)", category=CATEGORY,
            description="Loads a MAGI-1 DiT from its official shards (pick any shard; the index next to it is read).",
            inputs=[
                model_file("model_name", "diffusion_models", "Any shard of the MAGI-1 DiT, e.g. "
                           "magi1_4.5B_distill/model-00001-of-00002.safetensors."),
                io.Combo.Input("variant", options=list(MAGI1_VARIANTS), default="magi-1-4.5b-distill",
                               tooltip="Which release the files are (base: 3 guidance passes; distill: 1)."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="Compute dtype; default is bf16 on GPUs and fp32 on CPU."),
            ],
            outputs=[MagiModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str, variant: str, weight_dtype: str = "default") -> bool | str:
        for name, value, options in (("variant", variant, MAGI1_VARIANTS), ("weight_dtype", weight_dtype,
                                                                             WEIGHT_DTYPES)):
            if (answer := check_choice(name, value, options)) is not True:
                return answer
        return check_files(model=("diffusion_models", model_name))

    @classmethod
    def execute(cls, model_name: str, variant: str, weight_dtype: str) -> io.NodeOutput:
        found = MAGI1_VARIANTS[variant]
        folder = Path(model_path("diffusion_models", model_name)).parent
        return io.NodeOutput(manage(MagiModel(load_dit(folder, load_request(weight_dtype), found.size), found),
                                    "MAGI-1 diffusion model"))


class MagiTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXMagiTextEncoderLoader", display_name="MAGI-1 Text Encoder Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads T5 v1.1 XXL (DeepFloyd .bin shards + spiece.model in one folder) and MAGI-1's "
                        f"special tokens (text_encoders/{SPECIAL_TOKENS}).",
            inputs=[model_file("text_encoder_name", "text_encoders",
                               "Any shard of T5 v1.1 XXL, e.g. t5-v1_1-xxl/pytorch_model-00001-of-00002.bin.")],
            outputs=[MagiTextEncoderType.Output(display_name="text_encoder")],
        )

    @classmethod
    def validate_inputs(cls, text_encoder_name: str) -> bool | str:
        return check_files(text_encoder=("text_encoders", text_encoder_name),
                           special_tokens=("text_encoders", SPECIAL_TOKENS))

    @classmethod
    def execute(cls, text_encoder_name: str) -> io.NodeOutput:
        path = Path(model_path("text_encoders", text_encoder_name))
        index = path.parent / T5_INDEX
        encoder = load_text_encoder(index if index.is_file() else path, path.parent / "spiece.model", load_request())
        tokens = load_special_tokens(model_path("text_encoders", SPECIAL_TOKENS))
        return io.NodeOutput(manage(MagiText(encoder, tokens), "MAGI-1 T5 text encoder"))


class MagiVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXMagiVAELoader", display_name="MAGI-1 VAE Loader (VideosDGX)", category=CATEGORY,
            description="Loads the MAGI-1 transformer VAE (its config.json next to the weights is read).",
            inputs=[model_file("vae_name", "vae", "e.g. magi1_vae/diffusion_pytorch_model.safetensors.")],
            outputs=[MagiVAEType.Output(display_name="vae")],
        )

    @classmethod
    def validate_inputs(cls, vae_name: str) -> bool | str:
        return check_files(vae=("vae", vae_name))

    @classmethod
    def execute(cls, vae_name: str) -> io.NodeOutput:
        return io.NodeOutput(manage(load_vae(model_path("vae", vae_name), None, load_request()), "MAGI-1 VAE"))


class MagiTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXMagiTextEncode", display_name="MAGI-1 Text Encode (VideosDGX)", category=CATEGORY,
            description="Encodes the prompts: one line per 24-frame chunk; the last line goes on for later chunks.",
            inputs=[MagiTextEncoderType.Input("text_encoder"),
                    io.String.Input("prompt", multiline=True, tooltip="One prompt per line, one line per chunk.")],
            outputs=[MagiConditioningType.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, text_encoder: MagiText, prompt: str) -> io.NodeOutput:
        use(text_encoder)
        lines = tuple(line.strip() for line in prompt.splitlines() if line.strip()) or ("",)
        captions = tuple(text_encoder.encoder.encode(list(lines)))
        return io.NodeOutput(MagiConditioning(lines, captions, text_encoder.tokens))


class MagiChunkSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXMagiChunkSampler", display_name="MAGI-1 Chunk Sampler (VideosDGX)", category=CATEGORY,
            description="Generates the video chunk by chunk (up to 4 in flight, a cache of the clean past) and "
                        "decodes each chunk when it is final. An image starts the video (I2V); a video is continued "
                        "from its first 32 frames (V2V).",
            inputs=[
                MagiModelType.Input("model"),
                MagiConditioningType.Input("conditioning"),
                MagiVAEType.Input("vae"),
                io.Int.Input("width", default=720, min=16, max=4096, step=16),
                io.Int.Input("height", default=720, min=16, max=4096, step=16),
                io.Int.Input("length", default=96, min=4, max=4096, step=4,
                             tooltip="Frames; made in whole chunks of 24."),
                io.Int.Input("steps", default=64, min=4, max=256, step=4,
                             tooltip="A multiple of 4 (64 official for 4.5B; 16 for 24B distill, 32 for 24B base)."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Image.Input("image", optional=True, tooltip="Start frame (image-to-video)."),
                io.Image.Input("video", optional=True, tooltip="Video to continue (its first 32 frames are used)."),
                io.Float.Input("video_fps", optional=True, force_input=True,
                               tooltip="Frame rate of the video (Get Video Components' fps); it is resampled to "
                                       "24 fps first. Without it the video is taken as 24 fps."),
            ],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, model: MagiModel, conditioning: MagiConditioning, vae, width: int, height: int, length: int,
                steps: int, seed: int, image: torch.Tensor | None = None,
                video: torch.Tensor | None = None, video_fps: float | None = None) -> io.NodeOutput:
        request = VideoRequest(prompt=conditioning.prompts[0], prompts=conditioning.prompts, width=width,
                               height=height, frames=length, steps=steps, seed=seed, image=image, video=video,
                               video_fps=video_fps)
        model.variant.check(request)
        activations = sampling_phase_activations(model.dit.cfg, Size(width, height, length),
                                                 model.variant.sampler_settings(request), model.dit.dtype.itemsize)
        use(model, vae, memory_required=activations)
        check_memory(activations, torch_device(), f"MAGI-1 sampling of {width}x{height}, {length} frames")
        bar = progress(1)

        def on_progress(stage: str, done: int, total: int) -> None:
            check_interrupt()
            if stage == "sampling":
                bar.update_absolute(done, total)

        check_interrupt()
        frames = [chunk for _, chunk in sample_chunks(model.dit, vae, conditioning.tokens, model.variant, request,
                                                      list(conditioning.captions), on_progress)]
        return io.NodeOutput(torch.cat(frames))
