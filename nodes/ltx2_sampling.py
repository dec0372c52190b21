"""LTX-2 prompt encoding, sampling (text- or image-to-video, one or two stages) and decoding to IMAGE + AUDIO."""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch

from videosdgx.job import VideoRequest
from videosdgx.ltx2.assemble import decoded_sound, pipeline_for, sample_latents
from videosdgx.ltx2.memory import request_sampling_activations
from videosdgx.ltx2.pipeline import decode_video
from videosdgx.ltx2.sampler import TextContext
from videosdgx.ltx2.text_encoder import LTX2TextEncoder
from videosdgx.ltx2.variants import DEV_AUDIO, DEV_VIDEO, LTX2_NEGATIVE_PROMPT
from videosdgx.plan import Size
from videosdgx.runtime.memory import check_memory
from videosdgx.runtime.quantized_linear import compute_dtype

from ._comfy import check_interrupt, io, latent_previewer, progress
from ._model_manager import use
from .ltx2_types import (CATEGORY, LATENT_FORMAT, LTX25VideoDecoderType, LTX2AudioDecoder, LTX2AudioVAEType,
                         LTX2Conditioning, LTX2ConditioningType, LTX2Latents, LTX2LatentType, LTX2Model,
                         LTX2ModelType, LTX2TextEncoderType, LTX2UpsamplerType, LTX2VAEType)

MAX_SEED = 0xFFFFFFFFFFFFFFFF
MAX_SIZE = 4096
MAX_FRAMES = 1025
DEV_ONLY = "Dev models only (distilled models sample without guidance)."


class LTX2TextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2TextEncode",
            display_name="LTX-2 Text Encode (VideosDGX)",
            category=CATEGORY,
            description="Prompt and negative prompt -> LTX-2 conditioning (video and audio text streams).",
            inputs=[
                LTX2TextEncoderType.Input("text_encoder"),
                io.String.Input("prompt", multiline=True, dynamic_prompts=True, default="",
                                tooltip="Describe the picture and the sound (speech, music, ambience)."),
                io.String.Input("negative_prompt", multiline=True, dynamic_prompts=True, default="",
                                tooltip=f"{DEV_ONLY} Empty uses Lightricks' default negative prompt."),
                io.Boolean.Input("release_gemma", default=False,
                                 tooltip="Free Gemma after encoding (the largest model in memory); the next "
                                         "encode loads it again from its file."),
            ],
            outputs=[LTX2ConditioningType.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, text_encoder: LTX2TextEncoder, prompt: str, negative_prompt: str,
                release_gemma: bool) -> io.NodeOutput:
        check_interrupt()
        video, audio, mask = text_encoder.encode([prompt, negative_prompt.strip() or LTX2_NEGATIVE_PROMPT])
        if release_gemma:
            text_encoder.release()
            gc.collect()
        positive, negative = (TextContext(v[None], a[None], m[None]) for v, a, m in zip(video, audio, mask))
        return io.NodeOutput(LTX2Conditioning(positive, negative))


class LTX2Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2Sampler",
            display_name="LTX-2 Sampler (VideosDGX)",
            category=CATEGORY,
            description="Samples video and audio latents together. Distilled: the 8 published sigmas, no guidance. "
                        "Dev: LTX2Scheduler sigmas with CFG, STG, modality guidance and rescale. Two stages: half "
                        "size, x2 latent upsample, 3 refining steps (dev: with the distilled LoRA). Sizes are rounded "
                        "to multiples of 32 (64 for two stages) and frames to 8n+1, with a log note.",
            inputs=[
                LTX2ModelType.Input("model"),
                LTX2ConditioningType.Input("conditioning"),
                LTX2VAEType.Input("vae", tooltip="Encodes the first frame and sets the latent size."),
                LTX2AudioVAEType.Input("audio_vae", tooltip="Sets the audio latent size."),
                io.Int.Input("width", default=768, min=32, max=MAX_SIZE, step=32),
                io.Int.Input("height", default=512, min=32, max=MAX_SIZE, step=32),
                io.Int.Input("length", default=121, min=1, max=MAX_FRAMES, step=8, tooltip="Frames: 8n+1."),
                io.Int.Input("fps", default=24, min=1, max=120),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=0, min=0, max=200,
                             tooltip="0: the model's default (8 distilled, 40 dev 19B, 30 dev 2.3)."),
                io.Float.Input("cfg", default=DEV_VIDEO.cfg, min=1.0, max=30.0, step=0.1, round=0.01,
                               tooltip=f"Video CFG scale. {DEV_ONLY}"),
                io.Float.Input("audio_cfg", default=DEV_AUDIO.cfg, min=1.0, max=30.0, step=0.1, round=0.01,
                               tooltip=f"Audio CFG scale. {DEV_ONLY}"),
                io.Float.Input("stg", default=DEV_VIDEO.stg, min=0.0, max=10.0, step=0.1, round=0.01,
                               tooltip=f"Spatio-temporal guidance on the published block (0: off). {DEV_ONLY}"),
                io.Float.Input("modality", default=DEV_VIDEO.modality, min=1.0, max=10.0, step=0.1, round=0.01,
                               tooltip=f"Audio-video modality guidance (1: off). {DEV_ONLY}"),
                io.Float.Input("rescale", default=DEV_VIDEO.rescale, min=0.0, max=1.0, step=0.05, round=0.01,
                               tooltip=f"Guidance rescale (0: off). {DEV_ONLY}"),
                io.Boolean.Input("two_stage", default=True,
                                 tooltip="For two-stage models (19B, 2.5): needs the upsampler (dev: and the "
                                         "distilled LoRA on the loader). Off: one stage at the full size."),
                LTX2UpsamplerType.Input("upsampler", optional=True, tooltip="x2 latent upsampler (two stages)."),
                io.Image.Input("image", optional=True, tooltip="First frame (image-to-video)."),
                io.Image.Input("end_image", optional=True,
                               tooltip="Last frame (first/last-frame video; with or without a first frame)."),
                io.Float.Input("end_image_strength", default=1.0, min=0.0, max=1.0, step=0.05, round=0.01,
                               optional=True, tooltip="How closely the last frame is kept (1: exactly)."),
                LTX2UpsamplerType.Input("temporal_upsampler", optional=True,
                                        tooltip="LTX-2.5's temporal x2 latent upscaler (temporal_upscale)."),
                io.Boolean.Input("temporal_upscale", default=False, optional=True,
                                 tooltip="LTX-2.5: n frames become 2n - 1 at twice the fps, refined in 4 steps; "
                                         "needs the temporal upsampler. Connect the decode node's fps to Create "
                                         "Video."),
                LTX25VideoDecoderType.Input("video_decoder", optional=True,
                                            tooltip="LTX-2.5: the diffusion video decoder; the upscalers use its "
                                                    "latent statistics (as the command line does)."),
            ],
            outputs=[LTX2LatentType.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model: LTX2Model, conditioning: LTX2Conditioning, vae, audio_vae: LTX2AudioDecoder,
                width: int, height: int, length: int, fps: int, seed: int, steps: int, cfg: float, audio_cfg: float,
                stg: float, modality: float, rescale: float, two_stage: bool, upsampler=None,
                image: torch.Tensor | None = None, end_image: torch.Tensor | None = None,
                end_image_strength: float = 1.0, temporal_upsampler=None,
                temporal_upscale: bool = False, video_decoder=None) -> io.NodeOutput:
        pipe = pipeline_for(model.variant, model.dit, vae, audio_vae.audio_vae, audio_vae.vocoder, upsampler,
                            stage2_lora=model.stage2_lora, temporal_upsampler=temporal_upsampler,
                            diffusion_decoder=video_decoder)
        options = {"two_stage": two_stage, "audio_cfg": audio_cfg, "stg": stg, "modality": modality,
                   "rescale": rescale}
        if end_image is not None:
            options["end_image_strength"] = end_image_strength
        if temporal_upscale:
            options["temporal_upscale"] = True
        request = VideoRequest(prompt="", width=width, height=height, frames=length, fps=fps, seed=seed,
                               steps=steps or None, guidance=cfg, image=image, end_image=end_image, options=options)
        size = Size(width, height, length)
        activations = request_sampling_activations(
            model.dit.cfg, size, fps, len(pipe.guidance(request).passes()), pipe.two_stage(request),
            image is not None, compute_dtype(model.dit.proj_out).itemsize, keyframes=int(end_image is not None))
        use(model, vae, audio_vae, upsampler, temporal_upsampler, video_decoder, memory_required=activations)
        device = next(model.dit.parameters()).device
        check_memory(activations, device, f"LTX-2 sampling of {size}")
        positive, negative = (TextContext(c.video.to(device), c.audio.to(device), c.mask.to(device))
                              for c in (conditioning.positive, conditioning.negative))
        preview = latent_previewer(LATENT_FORMAT)
        bars: dict[str, object] = {}
        shown: list = [None]

        def on_latent(latent: torch.Tensor) -> None:
            shown[0] = preview(latent)

        def on_progress(stage: str, done: int, total: int) -> None:
            check_interrupt()
            if stage not in bars or done == 1:
                bars[stage] = progress(total)
            bars[stage].update_absolute(done, total, shown[0])

        check_interrupt()
        video, audio, _, rate = sample_latents(pipe, request, positive, negative, on_progress, on_latent)
        return io.NodeOutput(LTX2Latents(video, audio, rate, cut_sound=temporal_upscale))


class LTX2Decode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2Decode",
            display_name="LTX-2 Decode Video + Audio (VideosDGX)",
            category=CATEGORY,
            description="Latents -> frames (IMAGE, streamed decode) and sound (AUDIO). Connect both to core Create "
                        "Video -> Save Video for an MP4 with its sound, or AUDIO to Save Audio / Preview Audio.",
            inputs=[LTX2LatentType.Input("latent"), LTX2VAEType.Input("vae"), LTX2AudioVAEType.Input("audio_vae")],
            outputs=[io.Image.Output(display_name="images"), io.Audio.Output(display_name="audio"),
                     io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, latent: LTX2Latents, vae, audio_vae: LTX2AudioDecoder) -> io.NodeOutput:
        use(vae, audio_vae)
        device = next(vae.parameters()).device
        return decoded(latent, audio_vae, lambda on_progress: decode_video(vae, latent.video.to(device), on_progress))


def decoded(latent: LTX2Latents, audio_vae: LTX2AudioDecoder,
            decode_frames: Callable[[Callable[[str, int, int], None]], torch.Tensor]) -> io.NodeOutput:
    """(IMAGE frames, AUDIO, fps) of a decode node: `decode_frames(on_progress)` with ComfyUI's progress bar and
    Cancel, then the sound (cut to the video after a temporal x2 round)."""
    bar = None

    def on_progress(stage: str, done: int, total: int) -> None:
        nonlocal bar
        check_interrupt()
        bar = bar or progress(total)
        bar.update_absolute(done, total)

    check_interrupt()
    frames = decode_frames(on_progress)
    audio_device = next(audio_vae.audio_vae.parameters()).device
    audio = decoded_sound(audio_vae.audio_vae, audio_vae.vocoder, latent.audio.to(audio_device), frames.shape[0],
                          latent.fps, latent.cut_sound)
    return io.NodeOutput(frames, audio, latent.fps)
