"""Checks of a SkyReels V3 request that need no weights (`SkyReelsVariant.check` runs them before loading)."""

from __future__ import annotations

import torch

from videosdgx.job import VideoRequest
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.skyreels_v3.buckets import RESOLUTIONS
from videosdgx.skyreels_v3.references import check_references
from videosdgx.skyreels_v3.v2v import check_duration, condition_frames
from videosdgx.skyreels_v3.variants import AVATAR_RESOLUTIONS, EXTENSION_CHUNK_SECONDS, SkyReelsVariant


def check_request(variant: SkyReelsVariant, request: VideoRequest) -> None:
    """Refuse inputs the variant cannot use, before any weight is read."""
    resolution = request.options.get("resolution", variant.resolution)
    allowed = AVATAR_RESOLUTIONS if variant.task == "a2v" else RESOLUTIONS
    if resolution not in allowed:
        raise ConfigurationError(f"Unknown resolution {resolution!r} for {variant.title}; choose one of "
                                 f"{', '.join(allowed)} (--option resolution=...).")
    unknown = sorted(set(request.options) - set(OPTIONS[variant.task]))
    if unknown:
        raise ConfigurationError(f"{variant.title} has no option {', '.join(unknown)}; it takes "
                                 f"{', '.join(OPTIONS[variant.task])}.")
    if variant.task == "r2v":
        check_references(request.references)
        for kind in ("image", "end_image", "video", "audio"):
            if getattr(request, kind) is not None:
                raise ConfigurationError(f"{variant.title} takes 1-4 reference images and a prompt, not an {kind}.")
    if variant.task == "v2v":
        check_video_request(variant, request)
    if variant.task == "a2v":
        check_avatar_request(variant, request)


def check_avatar_request(variant: SkyReelsVariant, request: VideoRequest) -> None:
    """A portrait IMAGE and speech of at most `variant.max_seconds` (the release's 200 s)."""
    image, audio = request.image, request.audio
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] < 3 or 0 in image.shape:
        raise ConfigurationError(f"{variant.title} animates a portrait: give one image (--image face.png).")
    if audio is None or "waveform" not in audio or "sample_rate" not in audio:
        raise ConfigurationError(f"{variant.title} is driven by speech: give an audio file (--audio speech.wav).")
    samples, rate = audio["waveform"].shape[-1], int(audio["sample_rate"])
    if samples == 0 or rate <= 0:
        raise ConfigurationError("The audio holds no sound; give a speech recording (--audio speech.wav).")
    if samples / rate > variant.max_seconds:
        raise ConfigurationError(
            f"The audio lasts {samples / rate:.1f} s; {variant.title} makes at most {variant.max_seconds:.0f} s of "
            "video. Cut the audio."
        )
    motion, most = request.options.get("motion_frames", variant.motion_frames), variant.frames - variant.drop_frames - 1
    if not isinstance(motion, int) or not 1 <= motion <= most:
        raise ConfigurationError(f"--option motion_frames={motion}: {variant.title} carries 1 to {most} frames into "
                                 "the next clip (the release's class: 25, its CLI: 5).")
    extra = [kind for kind in ("end_image", "video") if getattr(request, kind) is not None]
    if extra or request.references:
        given = ", ".join(extra or ["references"])
        raise ConfigurationError(f"{variant.title} takes a portrait image and speech, not {given}.")


def v2v_mode_and_seconds(variant: SkyReelsVariant, request: VideoRequest) -> tuple[str, int]:
    """`options["mode"]` ("extend", default, or "shot") and the seconds to add (`options["duration"]`, else
    `frames / fps` rounded, else 5)."""
    mode = request.options.get("mode", "extend")
    fps = request.fps or variant.fps
    default = round(request.frames / fps) if request.frames else EXTENSION_CHUNK_SECONDS
    return mode, int(request.options.get("duration", default))


OPTIONS = {"r2v": ("resolution", "guidance_image"), "v2v": ("mode", "duration", "resolution"),
           "a2v": ("resolution", "guidance_audio", "motion_frames")}


def check_video_request(variant: SkyReelsVariant, request: VideoRequest) -> None:
    mode, seconds = v2v_mode_and_seconds(variant, request)
    check_duration(seconds, mode)
    video = request.video
    if video is None:
        raise ConfigurationError(f"{variant.title} continues a video: give one (--video clip.mp4).")
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[-1] < 3:
        shape = list(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ConfigurationError(f"The input video must be IMAGE frames [T, H, W, 3], got {shape}.")
    needed = condition_frames(mode, seconds)
    if video.shape[0] < needed:
        what = f"a {seconds}-second shot switch" if mode == "shot" else "extension"
        raise ConfigurationError(
            f"The input video has {video.shape[0]} frames; SkyReels V3 {what} needs at least {needed} "
            "(its last frames condition the new ones). Give a longer video."
        )
    extra = [kind for kind in ("image", "end_image", "audio") if getattr(request, kind) is not None]
    if extra or request.references:
        given = ", ".join(extra or ["reference images"])
        raise ConfigurationError(f"{variant.title} takes a video and a prompt, not {given}.")
