"""Video and audio files (PyAV) as ComfyUI IMAGE tensors and AUDIO dicts."""

from videosdgx.media.audio import read_audio, write_audio
from videosdgx.media.video import VideoClip, available_h264_encoder, read_video, write_video

__all__ = ["VideoClip", "available_h264_encoder", "read_audio", "read_video", "write_audio", "write_video"]
