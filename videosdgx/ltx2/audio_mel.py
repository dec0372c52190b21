"""The audio VAE's input features: stereo log-mel spectrograms, with `torch.stft` (torchaudio-equivalent).

ltx-core: 16 kHz, n_fft = window = 1024 (periodic Hann), hop 160, centred with reflect padding, magnitude
(power 1), 64 mel bands 0-8 kHz on the Slaney scale with Slaney (area) normalisation, natural log of
max(mel, 1e-5). Output [B, channels, frames, mels]; frames = samples // hop + 1 (100 per second).
"""

from __future__ import annotations

import math

import torch

from videosdgx.runtime.errors import ConfigurationError

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 160
MELS = 64

_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz (3 bands per 200 Hz), logarithmic above
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    log_part = _MIN_LOG_MEL + torch.log(hz.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(hz >= _MIN_LOG_HZ, log_part, hz / _F_SP)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log_part, mel * _F_SP)


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, mels: int = MELS, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular Slaney-normalised filters [n_fft // 2 + 1, mels] (float64)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = mel_to_hz(torch.linspace(lo.item(), hi.item(), mels + 2, dtype=torch.float64))
    widths = edges[1:] - edges[:-1]
    slopes = edges[None, :] - freqs[:, None]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = torch.clamp(torch.minimum(rising, falling), min=0)
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


def log_mel(
    waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP, mels: int = MELS
) -> torch.Tensor:
    """Waveform [B, C, N] at `sample_rate` -> log-mel [B, C, N // hop + 1, mels] (float32)."""
    if waveform.ndim != 3:
        raise ConfigurationError(f"log_mel takes audio shaped [batch, channels, samples], got {list(waveform.shape)}.")
    if waveform.shape[-1] <= n_fft // 2:
        raise ConfigurationError(f"The audio is too short for the mel front-end: at least {n_fft // 2 + 1} samples.")
    batch, channels, _ = waveform.shape
    x = waveform.reshape(batch * channels, -1).float()
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(
        x, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True, pad_mode="reflect", return_complex=True
    ).abs()
    bank = mel_filterbank(sample_rate, n_fft, mels).to(device=x.device, dtype=spec.dtype)
    mel = torch.log(torch.clamp(torch.einsum("nft,fm->ntm", spec, bank), min=1e-5))
    return mel.reshape(batch, channels, *mel.shape[1:])
