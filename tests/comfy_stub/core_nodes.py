"""Emulations of the ComfyUI core nodes the shipped workflows use, with the real schemas and behaviour:
CreateVideo, SaveVideo, LoadVideo and GetVideoComponents (comfy_extras/nodes_video.py, V3), LoadImage (nodes.py,
V1) and LoadAudio (comfy_extras/nodes_audio.py, V1)."""

import os
from pathlib import Path
from fractions import Fraction

import numpy as np
import torch
from PIL import Image, ImageOps

import folder_paths
from comfy_api.latest import InputImpl, Types, io, ui


class CreateVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CreateVideo", display_name="Create Video", category="image/video",
            description="Create a video from images.",
            inputs=[
                io.Image.Input("images", tooltip="The images to create a video from."),
                io.Float.Input("fps", default=30.0, min=1.0, max=120.0, step=1.0),
                io.Audio.Input("audio", optional=True, tooltip="The audio to add to the video."),
            ],
            outputs=[io.Video.Output()],
        )

    @classmethod
    def execute(cls, images, fps, audio=None):
        components = Types.VideoComponents(images=images, audio=audio, frame_rate=Fraction(fps))
        return io.NodeOutput(InputImpl.VideoFromComponents(components))


class SaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SaveVideo", display_name="Save Video", category="image/video",
            description="Saves the input images to your ComfyUI output directory.",
            inputs=[
                io.Video.Input("video", tooltip="The video to save."),
                io.String.Input("filename_prefix", default="video/ComfyUI", tooltip="The prefix for the file to "
                                "save. This may include formatting information such as %date:yyyy-MM-dd% or "
                                "%Empty Latent Image.width% to include values from nodes."),
                io.Combo.Input("format", options=Types.VideoContainer.as_input(), default="auto",
                               tooltip="The format to save the video as."),
                io.Combo.Input("codec", options=Types.VideoCodec.as_input(), default="auto",
                               tooltip="The codec to use for the video."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, video, filename_prefix, format, codec):
        width, height = video.get_dimensions()
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height)
        os.makedirs(folder, exist_ok=True)
        file = f"{filename}_{counter:05}_.{Types.VideoContainer.get_extension(format)}"
        video.save_to(os.path.join(folder, file), format=format, codec=codec)
        return io.NodeOutput(ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))


class LoadImage:
    """V1 node, as in ComfyUI's nodes.py (single-frame images; the alpha channel becomes the inverted MASK)."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's name
        folder = folder_paths.get_input_directory()
        files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
        return {"required": {"image": (files, {"image_upload": True})}}

    def load_image(self, image):
        picture = ImageOps.exif_transpose(Image.open(folder_paths.get_annotated_filepath(image)))
        pixels = torch.from_numpy(np.array(picture.convert("RGB")).astype(np.float32) / 255.0)[None]
        if "A" in picture.getbands():
            mask = 1.0 - torch.from_numpy(np.array(picture.getchannel("A")).astype(np.float32) / 255.0)
        else:
            mask = torch.zeros((64, 64), dtype=torch.float32)
        return pixels, mask.unsqueeze(0)


VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v"}  # folder_paths' "video" content types
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus"}


def _input_files(suffixes: set[str]) -> list[str]:
    """Files of the input folder by content type, as `folder_paths.filter_files_content_types` sorts them."""
    folder = folder_paths.get_input_directory()
    return sorted(f for f in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, f)) and Path(f).suffix.lower() in suffixes)


class GetVideoComponents(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GetVideoComponents", display_name="Get Video Components", category="image/video",
            description="Extracts all components from a video: frames, audio, and framerate.",
            inputs=[io.Video.Input("video", tooltip="The video to extract components from.")],
            outputs=[io.Image.Output(display_name="images"), io.Audio.Output(display_name="audio"),
                     io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, video):
        components = video.get_components()
        return io.NodeOutput(components.images, components.audio, float(components.frame_rate))


class LoadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LoadVideo", display_name="Load Video", category="image/video",
            inputs=[io.Combo.Input("file", options=_input_files(VIDEO_SUFFIXES), upload=io.UploadType.video)],
            outputs=[io.Video.Output()],
        )

    @classmethod
    def execute(cls, file):
        return io.NodeOutput(InputImpl.VideoFromFile(folder_paths.get_annotated_filepath(file)))


class LoadAudio:
    """V1 node: the first audio track as AUDIO {"waveform": [1, C, N] float, "sample_rate"} at the file's rate."""

    CATEGORY = "audio"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's name
        return {"required": {"audio": (_input_files(AUDIO_SUFFIXES | VIDEO_SUFFIXES), {"audio_upload": True})}}

    def load(self, audio):
        from videosdgx.media import read_audio

        return (read_audio(folder_paths.get_annotated_filepath(audio)),)
