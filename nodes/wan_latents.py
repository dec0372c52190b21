"""Wan latents: empty video latents of the right shape, and VAE encode / decode between IMAGE and LATENT."""

from __future__ import annotations

import torch

from videosdgx.wan.conditioning import VideoSize, frames_to_video, size_multiple, valid_size
from videosdgx.wan.pipeline import decode_frames
from videosdgx.wan.vae import WAN21_VAE
from videosdgx.wan.vae22 import WAN22_VAE

from ._comfy import check_interrupt, io, progress, ui
from .wan_types import CATEGORY, WanVAEType

MAX_SIZE = 4096
MAX_FRAMES = 1025
LATENT_FORMATS = {"16": WAN21_VAE, "48": WAN22_VAE}
SIZE_TOOLTIPS = {
    "width": "Video width in pixels (a multiple of 16; of 32 for the Wan 2.2 VAE). Other values are rounded.",
    "height": "Video height in pixels (a multiple of 16; of 32 for the Wan 2.2 VAE). Other values are rounded.",
    "length": "Frames: 4n+1 (81 = 5 s at 16 fps; 121 = 5 s at 24 fps for TI2V-5B). Other values are rounded.",
}


def size_inputs(width: int, height: int, length: int) -> list[io.Int.Input]:
    """width / height / length widgets with Wan's valid steps."""
    return [
        io.Int.Input("width", default=width, min=16, max=MAX_SIZE, step=16, tooltip=SIZE_TOOLTIPS["width"]),
        io.Int.Input("height", default=height, min=16, max=MAX_SIZE, step=16, tooltip=SIZE_TOOLTIPS["height"]),
        io.Int.Input("length", default=length, min=1, max=MAX_FRAMES, step=4, tooltip=SIZE_TOOLTIPS["length"]),
    ]


def empty_latent(vae_config, size: VideoSize) -> dict:
    """A zero LATENT `{"samples": [1, C, T, h, w]}` for a video of a valid size, on the CPU like ComfyUI's."""
    return {"samples": torch.zeros(1, *size.latent_shape(vae_config.z_dim, vae_config.spatial_factor))}


def size_output(size: VideoSize, *outputs) -> io.NodeOutput:
    """The node's outputs, with the size corrections shown on the node (and sent to headless clients)."""
    return io.NodeOutput(*outputs, ui=ui.PreviewText("\n".join(size.notes)) if size.notes else None)


class WanEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanEmptyLatent",
            display_name="Wan Empty Latent Video (VideosDGX)",
            category=CATEGORY,
            description="An empty video latent for text-to-video, shaped for the connected VAE.",
            inputs=[
                *size_inputs(832, 480, 81),
                io.Combo.Input("latent_channels", options=list(LATENT_FORMATS), default="16",
                               tooltip="16: Wan 2.1 VAE (Wan2.1, Wan2.2 A14B); 48: Wan 2.2 VAE (TI2V-5B). "
                                       "Ignored when a VAE is connected."),
                WanVAEType.Input("vae", optional=True, tooltip="Takes the latent layout from this VAE."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, width: int, height: int, length: int, latent_channels: str, vae=None) -> io.NodeOutput:
        config = vae.config if vae is not None else LATENT_FORMATS[latent_channels]
        size = valid_size(width, height, length, size_multiple(config))
        return size_output(size, empty_latent(config, size))


class WanVAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanVAEEncode",
            display_name="Wan VAE Encode (VideosDGX)",
            category=CATEGORY,
            description="Encodes frames (IMAGE, 4n+1 of them) into a Wan video latent.",
            inputs=[io.Image.Input("images"), WanVAEType.Input("vae")],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, vae) -> io.NodeOutput:
        parameter = next(vae.parameters())
        with torch.no_grad():
            latents = vae.encode(frames_to_video(images).to(parameter.device, parameter.dtype))
        return io.NodeOutput({"samples": latents.float().cpu()})


class WanVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanVAEDecode",
            display_name="Wan VAE Decode (VideosDGX)",
            category=CATEGORY,
            description="Decodes a Wan video latent into frames (IMAGE; several videos one after the other).",
            inputs=[io.Latent.Input("latent"), WanVAEType.Input("vae")],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, latent: dict, vae) -> io.NodeOutput:
        samples = latent["samples"]
        bar = progress(samples.shape[0] * samples.shape[2])

        def on_chunk(done: int, total: int) -> None:
            bar.update_absolute(done, total)
            check_interrupt()

        return io.NodeOutput(decode_frames(vae, samples, on_chunk))
