"""LTX-2.5 steps around the LTX-2 sampler: the shot length from the duration head, and decoding with the
diffusion video decoder (IMAGE) and the audio VAE (AUDIO)."""

from __future__ import annotations

from videosdgx.ltx2.duration_head25 import DurationHead
from videosdgx.ltx2.pipeline25 import diffusion_decode

from ._comfy import io
from ._model_manager import use
from .ltx2_sampling import MAX_FRAMES, MAX_SEED, MAX_SIZE, decoded
from .ltx2_types import (CATEGORY, LTX25DurationHeadType, LTX25VideoDecoderType, LTX2AudioDecoder,
                         LTX2AudioVAEType, LTX2Conditioning, LTX2ConditioningType, LTX2Latents, LTX2LatentType)


class LTX25Length(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX25Length",
            display_name="LTX-2.5 Length from Prompt (VideosDGX)",
            category=CATEGORY,
            description="The frame count of the shot the prompt describes (duration head: 1..20 s at fps, 8k+1 "
                        "frames), for the sampler's length; a length set here is used as it is.",
            inputs=[
                LTX25DurationHeadType.Input("duration_head"),
                LTX2ConditioningType.Input("conditioning"),
                io.Int.Input("fps", default=24, min=1, max=120, tooltip="The sampler's frame rate."),
                io.Int.Input("length", default=0, min=0, max=MAX_FRAMES,
                             tooltip="0: predicted from the prompt. Otherwise this frame count (8n+1)."),
            ],
            outputs=[io.Int.Output(display_name="length")],
        )

    @classmethod
    def execute(cls, duration_head: DurationHead, conditioning: LTX2Conditioning, fps: int,
                length: int) -> io.NodeOutput:
        if length:
            return io.NodeOutput(length)
        device = duration_head.video_modality_emb.device
        text = conditioning.positive
        return io.NodeOutput(duration_head.predict_frames(text.video.to(device), text.audio.to(device), float(fps)))


class LTX25Decode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX25Decode",
            display_name="LTX-2.5 Diffusion Decode Video + Audio (VideosDGX)",
            category=CATEGORY,
            description="Latents -> frames (IMAGE) with LTX-2.5's diffusion video decoder and sound (AUDIO). "
                        "Connect both to core Create Video -> Save Video for an MP4 with its sound. LTX-2 Decode "
                        "decodes the same latents with the conv VAE instead.",
            inputs=[
                LTX2LatentType.Input("latent"),
                LTX25VideoDecoderType.Input("video_decoder"),
                LTX2AudioVAEType.Input("audio_vae"),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                             tooltip="The decoder's noise; the command line uses the sampler's seed."),
                io.Int.Input("tile_frames", default=0, min=0, max=MAX_FRAMES, step=8, optional=True,
                             tooltip="Pixel frames per temporal tile (a multiple of 8, at least 16 for the released "
                                     "decoder); 0: chosen from the free memory (a clip that fits is one tile)."),
                io.Int.Input("tile_size", default=0, min=0, max=MAX_SIZE, step=32, optional=True,
                             tooltip="Sides of the square spatial tiles in pixels (a multiple of 32, at least 192 "
                                     "for the released decoder); 0: chosen from the free memory."),
            ],
            outputs=[io.Image.Output(display_name="images"), io.Audio.Output(display_name="audio"),
                     io.Float.Output(display_name="fps", tooltip="Twice the sampler's after a temporal x2 upscale.")],
        )

    @classmethod
    def validate_inputs(cls, tile_frames: int = 0, tile_size: int = 0) -> bool | str:
        for name, value, step in (("tile_frames", tile_frames, 8), ("tile_size", tile_size, 32)):
            if value < 0 or value % step:
                return f"{name}={value}: give a multiple of {step}, or 0 to have it chosen from the free memory."
        return True

    @classmethod
    def execute(cls, latent: LTX2Latents, video_decoder, audio_vae: LTX2AudioDecoder, seed: int,
                tile_frames: int = 0, tile_size: int = 0) -> io.NodeOutput:
        use(video_decoder, audio_vae)
        device = next(video_decoder.parameters()).device
        tiles = {key: value for key, value in (("decoder_tile_frames", tile_frames), ("decoder_tile_size", tile_size))
                 if value}
        return decoded(latent, audio_vae, lambda on_progress: diffusion_decode(
            video_decoder, latent.video.to(device), seed, on_progress, tiles))
