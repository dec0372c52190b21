"""Video files with PyAV: ComfyUI IMAGE tensors to MP4 (H.264 yuv420p, BT.709, AAC audio) and back."""

import logging
import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import ColorRange, Colorspace

from videosdgx.runtime.errors import ConfigurationError, VideosDGXError
from videosdgx.media.audio import add_audio_stream, audio_to_numpy, encode_audio, open_input, output_file, read_audio

log = logging.getLogger(__name__)

H264_ENCODERS = ("libx264", "libopenh264")
FALLBACK_ENCODER = "mpeg4"
BT709 = 1  # AVCOL_SPC_BT709 = AVCOL_PRI_BT709 = AVCOL_TRC_BT709 in FFmpeg's libavutil/pixfmt.h
GET_H264 = "Install the PyAV wheels from PyPI (`pip install --force-reinstall av`), which bundle libx264."


@dataclass
class VideoClip:
    """A decoded video: IMAGE frames [frames, height, width, 3] float32 in 0..1, its rate and optional AUDIO."""

    frames: torch.Tensor
    fps: float
    audio: dict | None
    width: int
    height: int


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        return False
    return True


def available_h264_encoder() -> str | None:
    """The first H.264 encoder this PyAV build provides (libx264, then libopenh264), or None."""
    return next((name for name in H264_ENCODERS if _has_encoder(name)), None)


def _choose_encoder() -> str:
    """libx264 when present; otherwise the next H.264 encoder, then mpeg4, with a warning saying so."""
    encoder = available_h264_encoder()
    if encoder == "libx264":
        return encoder
    if encoder is None and _has_encoder(FALLBACK_ENCODER):
        encoder = FALLBACK_ENCODER
    if encoder is None:
        raise VideosDGXError(
            f"This PyAV build has no video encoder that can write MP4 (tried {', '.join(H264_ENCODERS)}, "
            f"{FALLBACK_ENCODER}). {GET_H264}"
        )
    kind = "H.264 without CRF control" if encoder in H264_ENCODERS else "MPEG-4 Part 2, which browsers do not play"
    log.warning("libx264 is missing from this PyAV build; encoding with %s (%s). %s", encoder, kind, GET_H264)
    return encoder


def _check_frames(path: Path, frames: torch.Tensor, fps: float, crf: int) -> None:
    shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise VideosDGXError(
            f"Cannot write {path}: frames must be an IMAGE tensor [frames, height, width, 3 or 4], got {shape} "
            "(a single image needs a frame axis: image[None])."
        )
    if frames.numel() == 0:
        raise VideosDGXError(f"Cannot write {path}: the frames tensor is empty (shape {shape}).")
    if not frames.is_floating_point():
        raise VideosDGXError(f"Cannot write {path}: frames must be float in 0..1, got {frames.dtype} (divide by 255).")
    if not torch.isfinite(frames).all():
        raise VideosDGXError(f"Cannot write {path}: frames contain NaN or infinite values.")
    if not isinstance(fps, numbers.Real) or not 0 < fps < math.inf:
        raise ConfigurationError(f"Cannot write {path}: fps must be a positive number, got {fps!r}.")
    if not 0 <= crf <= 51:
        raise ConfigurationError(f"Cannot write {path}: crf must be in 0..51 (lower is better), got {crf}.")


def _to_rgb24(frame: torch.Tensor, height: int, width: int) -> np.ndarray:
    """One IMAGE frame to uint8 [height, width, 3], clamped, edge-padded at the bottom/right to the given size."""
    pixels = frame[..., :3].detach().to("cpu", torch.float32).clamp(0.0, 1.0).permute(2, 0, 1)
    pixels = F.pad(pixels, (0, width - pixels.shape[2], 0, height - pixels.shape[1]), mode="replicate")
    return pixels.permute(1, 2, 0).mul(255).round().to(torch.uint8).contiguous().numpy()


def write_video(
    path: str | Path,
    frames: torch.Tensor,
    fps: float,
    audio: dict | None = None,
    crf: int = 19,
    preset: str = "medium",
) -> Path:
    """Write IMAGE frames [frames, height, width, 3|4] in 0..1 as an MP4 file, with AUDIO as AAC when given.

    H.264 yuv420p, BT.709 limited range, via libx264 (`crf`, `preset`); without libx264 it falls back to
    libopenh264, then mpeg4, with a warning.
    Alpha is dropped, values are clamped to 0..1 and an odd width/height is padded to even with edge pixels.
    The file appears at `path` only once it is complete. Returns `path`.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ConfigurationError(f"write_video writes MP4; give a file name ending in .mp4, got {path}.")
    _check_frames(path, frames, fps, crf)
    encoder = _choose_encoder()
    samples, sample_rate = audio_to_numpy(audio) if audio is not None else (None, 0)
    count, height, width, channels = frames.shape
    if channels == 4:
        log.info("Dropping the alpha channel: MP4/H.264 stores no transparency.")
    even_height, even_width = height + height % 2, width + width % 2
    if (even_height, even_width) != (height, width):
        log.info("Padding %dx%d to %dx%d with edge pixels (yuv420p needs even sizes).",
                 width, height, even_width, even_height)

    rate = Fraction(float(fps)).limit_denominator(1001)
    options = {"crf": str(crf), "preset": preset} if encoder == "libx264" else {}
    with output_file(path, "mp4", {"movflags": "+faststart"}) as container:
        stream = container.add_stream(encoder, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = even_width, even_height, "yuv420p"
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = BT709
        context.color_range = ColorRange.MPEG
        if encoder != "libx264":
            context.bit_rate = max(1_000_000, int(0.5 * even_width * even_height * fps))
        audio_stream = add_audio_stream(container, "aac", samples.shape[0], sample_rate) if audio is not None else None

        for index, frame in enumerate(frames):
            rgb = av.VideoFrame.from_ndarray(_to_rgb24(frame, even_height, even_width), format="rgb24")
            picture = rgb.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
            picture.pts = index
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            encode_audio(container, audio_stream, samples, sample_rate)
    log.info("Wrote %s: %d frames %dx%d at %s fps with %s%s.", path, count, even_width, even_height, rate, encoder,
             " + AAC audio" if audio is not None else "")
    return path


def _cut_audio(audio: dict, start_s: float, end_s: float | None) -> dict | None:
    """The part of AUDIO between two times in seconds (None: to the end), or None when nothing is left."""
    rate = audio["sample_rate"]
    end = None if end_s is None else round(end_s * rate)
    waveform = audio["waveform"][..., round(start_s * rate) : end]
    return {"waveform": waveform.contiguous(), "sample_rate": rate} if waveform.shape[-1] else None


def read_video(
    path: str | Path, max_frames: int | None = None, start_frame: int = 0, every_nth: int = 1
) -> VideoClip:
    """Decode the first video stream of a file into a VideoClip, with its first audio track when there is one.

    Keeps frames start_frame, start_frame + every_nth, ... (at most `max_frames`); fps is divided by every_nth
    and the audio is cut to the time span of the kept frames.
    """
    if start_frame < 0 or every_nth < 1 or (max_frames is not None and max_frames < 1):
        raise ConfigurationError(
            f"Need start_frame >= 0, every_nth >= 1 and max_frames >= 1 or None; "
            f"got start_frame={start_frame}, every_nth={every_nth}, max_frames={max_frames}."
        )
    pictures = []
    decoded = 0
    with open_input(path) as container:
        if not container.streams.video:
            raise VideosDGXError(f"{path} has no video stream.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideosDGXError(f"{path} does not state a frame rate.")
        for index, frame in enumerate(container.decode(stream)):
            decoded = index + 1
            if index >= start_frame and (index - start_frame) % every_nth == 0:
                pictures.append(frame.to_ndarray(format="rgb24"))
                if len(pictures) == max_frames:
                    break
        has_audio = bool(container.streams.audio)
    if decoded == 0:
        raise VideosDGXError(f"{path} holds no decodable video frames.")
    if not pictures:
        raise ConfigurationError(f"{path} has {decoded} video frames; start_frame={start_frame} is past the end.")

    fps = float(rate)
    audio = read_audio(path) if has_audio else None
    stopped_early = len(pictures) == max_frames
    if audio is not None and (start_frame > 0 or stopped_early):
        end_frame = start_frame + len(pictures) * every_nth if stopped_early else None
        audio = _cut_audio(audio, start_frame / fps, end_frame / fps if end_frame is not None else None)
    frames = torch.from_numpy(np.stack(pictures)).float().div_(255)
    return VideoClip(frames=frames, fps=fps / every_nth, audio=audio, width=frames.shape[2], height=frames.shape[1])
