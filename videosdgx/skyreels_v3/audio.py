"""Avatar audio: 16 kHz mono speech, loudness-normalised to -23 LUFS (ITU-R BS.1770-4, as pyloudnorm measures it),
wav2vec2 features at 25 per second and the 5-frame windows the avatar DiT takes (skyreels_v3.md §4)."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import torch

from videosdgx.media.audio import audio_to_numpy, read_audio
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.skyreels_v3.variants import AVATAR_MAX_SECONDS
from videosdgx.skyreels_v3.wav2vec2 import Wav2Vec2Encoder

SAMPLE_RATE = 16000
FPS = 25
TARGET_LUFS = -23.0
MIN_SECONDS = 0.4
WINDOW = 5
# K-weighting (BS.1770): a +4 dB high shelf at 1500 Hz, then a high pass at 38 Hz.
K_WEIGHTING = (("high_shelf", 4.0, 1 / math.sqrt(2), 1500.0), ("high_pass", 0.0, 0.5, 38.0))
BLOCK_SECONDS, BLOCK_STEP = 0.4, 0.25  # 400 ms gating blocks overlapping by 75 %
ABSOLUTE_GATE, RELATIVE_GATE = -70.0, -10.0


def biquad(kind: str, gain_db: float, q: float, fc: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of a second-order filter, a[0] = 1 (the Audio EQ cookbook forms pyloudnorm uses)."""
    gain, w0 = 10 ** (gain_db / 40), 2 * math.pi * fc / rate
    alpha, cos = math.sin(w0) / (2 * q), math.cos(w0)
    if kind == "high_shelf":
        root = 2 * math.sqrt(gain) * alpha
        b = [gain * ((gain + 1) + (gain - 1) * cos + root), -2 * gain * ((gain - 1) + (gain + 1) * cos),
             gain * ((gain + 1) + (gain - 1) * cos - root)]
        a = [(gain + 1) - (gain - 1) * cos + root, 2 * ((gain - 1) - (gain + 1) * cos),
             (gain + 1) - (gain - 1) * cos - root]
    else:
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array(b) / a[0], np.array(a) / a[0]


def _impulse_response(b: np.ndarray, a: np.ndarray, length: int) -> np.ndarray:
    response, x1, x2, y1, y2 = np.zeros(length), 0.0, 0.0, 0.0, 0.0
    for n in range(length):
        x0 = 1.0 if n == 0 else 0.0
        y0 = b[0] * x0 + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
        response[n], x2, x1, y2, y1 = y0, x1, x0, y1, y0
    return response


def k_weighted(samples: torch.Tensor, rate: int) -> torch.Tensor:
    """Both K-weighting stages as one FFT convolution with their impulse response over 0.5 s (by then it has
    decayed below 1e-40)."""
    length = rate // 2
    response = np.array([1.0])
    for stage in K_WEIGHTING:
        response = np.convolve(response, _impulse_response(*biquad(*stage, rate), length))[:length]
    size = samples.shape[-1] + length
    spectrum = torch.fft.rfft(samples.double(), n=size) * torch.fft.rfft(torch.from_numpy(response), n=size)
    return torch.fft.irfft(spectrum, n=size)[: samples.shape[-1]]


def integrated_loudness(samples: torch.Tensor, rate: int = SAMPLE_RATE) -> float:
    """Gated integrated loudness (LUFS) of mono `samples [N]`; -inf for silence."""
    if samples.shape[-1] < BLOCK_SECONDS * rate:
        raise ConfigurationError(f"Loudness needs at least {BLOCK_SECONDS} s of audio.")
    power = k_weighted(samples, rate) ** 2
    seconds = samples.shape[-1] / rate
    blocks = int(np.round((seconds - BLOCK_SECONDS) / (BLOCK_SECONDS * BLOCK_STEP))) + 1
    bounds = [(int(BLOCK_SECONDS * j * BLOCK_STEP * rate), int(BLOCK_SECONDS * (j * BLOCK_STEP + 1) * rate))
              for j in range(blocks)]
    z = torch.stack([power[lo:hi].sum() for lo, hi in bounds]) / (BLOCK_SECONDS * rate)
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * torch.log10(z)
        gated = z[loudness >= ABSOLUTE_GATE]
        if gated.numel() == 0:
            return float("-inf")
        relative = -0.691 + 10 * math.log10(gated.mean().item()) + RELATIVE_GATE
        kept = z[(loudness > relative) & (loudness > ABSOLUTE_GATE)]
    return -0.691 + 10 * math.log10(kept.mean().item()) if kept.numel() else float("-inf")


def normalize_loudness(samples: torch.Tensor, rate: int = SAMPLE_RATE, target: float = TARGET_LUFS) -> torch.Tensor:
    """Scale to `target` LUFS; near-silence (|loudness| > 100) is left as it is, as the release does."""
    loudness = integrated_loudness(samples, rate)
    if not math.isfinite(loudness) or abs(loudness) > 100:
        return samples
    return samples * 10 ** ((target - loudness) / 20)


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 samples at `rate` -> 16 kHz with libswresample (as files are read)."""
    frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="fltp", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
    chunks = [out.to_ndarray() for f in (frame, None) for out in resampler.resample(f)]
    return np.concatenate(chunks, axis=1)[0]


def load_speech(audio: dict | str | Path, max_seconds: float = AVATAR_MAX_SECONDS) -> torch.Tensor:
    """An AUDIO dict or any file PyAV reads -> float64 16 kHz mono samples, loudness-normalised.

    Refuses empty audio, audio under 0.4 s and audio over `max_seconds` (the release: 5000 frames at 25 fps).
    """
    if isinstance(audio, (str, Path)):
        audio = read_audio(audio, sample_rate=SAMPLE_RATE, mono=True)
    samples, rate = audio_to_numpy(audio)
    samples = samples.mean(axis=0)
    if rate != SAMPLE_RATE:
        samples = _resample(samples, rate)
    seconds = samples.shape[0] / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise ConfigurationError(f"The speech lasts {seconds:.2f} s; the avatar needs at least {MIN_SECONDS} s.")
    if seconds > max_seconds:
        raise ConfigurationError(
            f"The speech lasts {seconds:.1f} s; SkyReels V3 A2V makes at most {max_seconds:.0f} s. Cut the audio."
        )
    return normalize_loudness(torch.from_numpy(samples).double())


def speech_features(encoder: Wav2Vec2Encoder, speech: torch.Tensor) -> torch.Tensor:
    """`[T_video, layers, hidden]` float32: wav2vec2 states of every layer (not the input) at 25 per second,
    `T_video = ceil(seconds * 25)`; the input is normalised to zero mean, unit variance first."""
    frames = math.ceil(speech.shape[-1] / SAMPLE_RATE * FPS)
    normed = (speech - speech.mean()) / torch.sqrt(speech.var(unbiased=False) + 1e-7)
    parameter = next(encoder.parameters())
    with torch.no_grad():
        states = encoder(normed.float()[None].to(parameter.device, parameter.dtype), frames=frames)
    return torch.stack(states[1:], dim=2)[0].float().cpu()


def audio_windows(features: torch.Tensor, start: int, end: int, window: int = WINDOW) -> torch.Tensor:
    """`[1, end - start, window, layers, hidden]`: for each video frame, the features of the `window` frames
    centred on it (indices clamped to the clip of features)."""
    half = window // 2
    centres = torch.arange(start, end)[:, None] + torch.arange(-half, half + 1)[None]
    return features[centres.clamp(0, features.shape[0] - 1)][None]
