"""The LTX-2 generate node: prompt (+ first-frame image) -> frames, their sound, and the two as a VIDEO."""

from __future__ import annotations

import logging
from fractions import Fraction

import torch

from videosdgx.job import VideoRequest
from videosdgx.ltx2.pipeline import LTX2Pipeline

from ._comfy import check_interrupt, io, progress
from .ltx2_types import CATEGORY, LTX2PipelineType

log = logging.getLogger(__name__)
MAX_SEED = 0xFFFFFFFFFFFFFFFF
MAX_SIZE = 4096
MAX_FRAMES = 1025


class LTX2Generate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXLTX2Generate",
            display_name="LTX-2 Generate Video + Audio (VideosDGX)",
            category=CATEGORY,
            description="Text (and optionally a first frame) to video with its generated sound. Sizes are rounded "
                        "to multiples of 32 (64 for two-stage) and frames to 8n+1, with a log note.",
            inputs=[
                LTX2PipelineType.Input("ltx2"),
                io.String.Input("prompt", multiline=True, dynamic_prompts=True, default=""),
                io.String.Input("negative_prompt", multiline=True, dynamic_prompts=True, default="",
                                tooltip="Dev models only; empty uses Lightricks' default negative prompt."),
                io.Int.Input("width", default=768, min=32, max=MAX_SIZE, step=32),
                io.Int.Input("height", default=512, min=32, max=MAX_SIZE, step=32),
                io.Int.Input("length", default=121, min=1, max=MAX_FRAMES, step=8, tooltip="Frames: 8n+1."),
                io.Int.Input("fps", default=24, min=1, max=120),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=0, min=0, max=200,
                             tooltip="0: the model's default (8 distilled, 40 dev 19B, 30 dev 2.3)."),
                io.Float.Input("cfg", default=0.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Video guidance scale of dev models; 0 keeps the default (3)."),
                io.Boolean.Input("two_stage", default=True,
                                 tooltip="Distilled 19B: half size, x2 latent upsample, 3 refining steps "
                                         "(needs the upsampler)."),
                io.Image.Input("image", optional=True, tooltip="First frame (image-to-video)."),
            ],
            outputs=[io.Image.Output(display_name="images"), io.Audio.Output(display_name="audio"),
                     io.Video.Output(display_name="video")],
        )

    @classmethod
    def execute(cls, ltx2: LTX2Pipeline, prompt: str, negative_prompt: str, width: int, height: int, length: int,
                fps: int, seed: int, steps: int, cfg: float, two_stage: bool,
                image: torch.Tensor | None = None) -> io.NodeOutput:
        from comfy_api.latest import InputImpl, Types

        bars: dict[str, object] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            check_interrupt()
            if stage not in bars or done == 1:
                bars[stage] = progress(total)
            bars[stage].update_absolute(done, total)

        if two_stage and ltx2.upsampler is None and ltx2.variant.two_stage:
            log.warning("no latent upsampler loaded: sampling %s in one stage", ltx2.variant.title)
        request = VideoRequest(prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                               frames=length, fps=fps, seed=seed, steps=steps or None, guidance=cfg or None,
                               image=image, options={"two_stage": two_stage and ltx2.upsampler is not None})
        check_interrupt()
        result = ltx2.generate(request, on_progress)
        video = InputImpl.VideoFromComponents(
            Types.VideoComponents(images=result.frames, frame_rate=Fraction(int(result.fps)), audio=result.audio))
        return io.NodeOutput(result.frames, result.audio, video)
