"""Audio files with PyAV, plus the file handling shared with the video writer.

Audio travels as ComfyUI's AUDIO dict: `{"waveform": float32 [batch, channels, samples] in -1..1,
"sample_rate": int}`.
"""

import logging
import math
import numbers
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import av
import numpy as np
import torch

from videosdgx.runtime.errors import ConfigurationError, VideosDGXError

log = logging.getLogger(__name__)

AUDIO_CODECS = {".wav": ("wav", "pcm_s16le"), ".flac": ("flac", "flac")}
CHANNEL_LAYOUTS = {1: "mono", 2: "stereo"}


@contextmanager
def open_input(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open a media file for reading; a missing or unreadable file raises VideosDGXError naming it."""
    path = Path(path)
    if not path.is_file():
        raise VideosDGXError(f"Media file not found: {path} does not exist or is not a file. Check the path.")
    try:
        with av.open(str(path)) as container:
            yield container
    except av.FFmpegError as error:
        raise VideosDGXError(
            f"Cannot read {path}: it is not a video or audio file FFmpeg can decode ({error})."
        ) from error


@contextmanager
def output_file(
    path: str | Path, container_format: str, container_options: dict[str, str] | None = None
) -> Iterator[av.container.OutputContainer]:
    """Write a media file atomically: encode into a hidden temporary file next to `path`, then rename.

    A crash or error never leaves a half-written file at `path`; FFmpeg errors become VideosDGXError.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with av.open(str(partial), "w", format=container_format, container_options=container_options) as container:
            yield container
        partial.replace(path)
    except av.FFmpegError as error:
        raise VideosDGXError(f"Writing {path} failed: {error}") from error
    finally:
        partial.unlink(missing_ok=True)


def audio_to_numpy(audio: dict) -> tuple[np.ndarray, int]:
    """Validate an AUDIO dict; return its first batch item as float32 [channels, samples] in -1..1 and the rate."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise VideosDGXError("Audio must be a dict with 'waveform' [batch, channels, samples] and 'sample_rate'.")
    waveform, sample_rate = audio["waveform"], audio["sample_rate"]
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise VideosDGXError(f"Audio waveform must be a tensor [batch, channels, samples], got {shape}.")
    batch, channels, samples = waveform.shape
    if batch == 0 or samples == 0:
        raise VideosDGXError(f"Audio waveform is empty (shape {tuple(waveform.shape)}).")
    if channels not in CHANNEL_LAYOUTS:
        raise ConfigurationError(f"Audio has {channels} channels; only mono or stereo can be written. Downmix first.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise ConfigurationError(f"Audio sample_rate must be a positive int, got {sample_rate!r}.")
    if batch > 1:
        log.warning("Audio batch has %d items; writing only the first.", batch)
    samples_np = waveform[0].detach().to("cpu", torch.float32)
    if not torch.isfinite(samples_np).all():
        raise VideosDGXError("Audio waveform contains NaN or infinite values.")
    return samples_np.clamp(-1.0, 1.0).contiguous().numpy(), int(sample_rate)


def add_audio_stream(
    container: av.container.OutputContainer, codec: str, channels: int, sample_rate: int
) -> av.audio.stream.AudioStream:
    """Add an audio stream; rates the codec cannot store are replaced by 48 kHz (PyAV resamples on encode)."""
    supported = av.codec.Codec(codec, "w").audio_rates
    rate = sample_rate
    if supported and sample_rate not in supported:
        rate = 48000
        log.info("%s cannot store %d Hz audio; resampling to %d Hz.", codec, sample_rate, rate)
    return container.add_stream(codec, rate=rate, layout=CHANNEL_LAYOUTS[channels])


def encode_audio(
    container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, samples: np.ndarray, sample_rate: int
) -> None:
    """Encode and mux float32 [channels, samples] audio into `stream`, then flush the encoder."""
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=CHANNEL_LAYOUTS[samples.shape[0]])
    frame.sample_rate = sample_rate
    frame.pts = 0
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_audio(path: str | Path, audio: dict) -> Path:
    """Write AUDIO as 16-bit WAV or FLAC, chosen by the suffix of `path`. Returns the path written."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_CODECS:
        raise ConfigurationError(f"Cannot write audio to {path}: use a .wav or .flac file name.")
    container_format, codec = AUDIO_CODECS[path.suffix.lower()]
    samples, sample_rate = audio_to_numpy(audio)
    with output_file(path, container_format) as container:
        stream = add_audio_stream(container, codec, samples.shape[0], sample_rate)
        encode_audio(container, stream, samples, sample_rate)
    return path


def read_audio(path: str | Path, sample_rate: int | None = None, mono: bool = False) -> dict:
    """Read the first audio track of a wav/mp3/flac/m4a/mp4 file as AUDIO (batch 1).

    `sample_rate` resamples (libswresample via `av.AudioResampler`); `mono` averages the channels.
    """
    if sample_rate is not None and sample_rate <= 0:
        raise ConfigurationError(f"sample_rate must be positive, got {sample_rate}.")
    with open_input(path) as container:
        if not container.streams.audio:
            raise VideosDGXError(f"{path} has no audio track.")
        stream = container.streams.audio[0]
        rate = sample_rate or stream.rate
        resampler = av.AudioResampler(format="fltp", rate=rate)
        chunks = [
            resampled.to_ndarray()
            for frame in chain(container.decode(stream), [None])
            for resampled in resampler.resample(frame)
        ]
        declared = round(stream.duration * stream.time_base * rate) if stream.duration else None
        padding_limit = math.ceil(stream.codec_context.frame_size * rate / stream.rate)
    if not chunks:
        raise VideosDGXError(f"The audio track of {path} holds no samples.")
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1))
    if declared is not None and 0 < waveform.shape[1] - declared <= padding_limit:
        waveform = waveform[:, :declared]  # drop the encoder's padding of the last codec frame
    if mono:
        waveform = waveform.mean(dim=0, keepdim=True)
    return {"waveform": waveform.unsqueeze(0).contiguous(), "sample_rate": rate}
