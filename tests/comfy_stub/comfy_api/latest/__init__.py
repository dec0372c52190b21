"""Stand-in for comfy_api.latest: ComfyExtension, io, ui, Input, InputImpl, Types."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any

from . import io, ui  # noqa: F401


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        return None

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        ...


class VideoCodec(str, Enum):
    AUTO = "auto"
    H264 = "h264"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]


class VideoContainer(str, Enum):
    AUTO = "auto"
    MP4 = "mp4"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def get_extension(cls, value) -> str:
        return "mp4" if cls(value) in (cls.AUTO, cls.MP4) else ""


@dataclass
class VideoComponents:
    images: Any
    frame_rate: Fraction
    audio: Any = None
    metadata: Any = None


class VideoFromComponents:
    """Frames held in memory; `save_to` encodes them (here with videosdgx.media, ComfyUI uses PyAV directly)."""

    def __init__(self, components: VideoComponents):
        self._components = components

    def get_components(self) -> VideoComponents:
        return self._components

    def get_dimensions(self) -> tuple[int, int]:
        return self._components.images.shape[2], self._components.images.shape[1]

    def get_container_format(self) -> str:
        return "mp4"

    def save_to(self, path, format=VideoContainer.AUTO, codec=VideoCodec.AUTO, metadata=None) -> None:
        from videosdgx.media import write_video

        components = self._components
        write_video(path, components.images, float(components.frame_rate), audio=components.audio)


class VideoFromFile:
    """A video file; `get_components` decodes every frame (float 0..1), the first audio track and the rate."""

    def __init__(self, file):
        self.file = file

    def get_components(self) -> VideoComponents:
        from videosdgx.media import read_video

        clip = read_video(self.file)
        return VideoComponents(images=clip.frames, audio=clip.audio, frame_rate=Fraction(clip.fps).limit_denominator())

    def get_dimensions(self) -> tuple[int, int]:
        images = self.get_components().images
        return images.shape[2], images.shape[1]


class Input:
    Video = object


class InputImpl:
    VideoFromComponents = VideoFromComponents
    VideoFromFile = VideoFromFile


class Types:
    VideoComponents = VideoComponents
    VideoCodec = VideoCodec
    VideoContainer = VideoContainer
