"""LTX-2 vocoders: stereo log-mel [B, 2, T, 64] -> waveform [B, 2, N].

* LTX-2 19B: HiFi-GAN (`resblock "1"`, leaky ReLU), 100 mel frames/s -> 24 kHz.
* LTX-2.3: BigVGAN-v2 generator (`resblock "AMP1"`, anti-aliased SnakeBeta) -> 16 kHz, then bandwidth extension
  to 48 kHz: a causal log-mel of that waveform drives a second generator whose output is added to the
  waveform resampled x3 (Hann-windowed sinc), clipped to [-1, 1].

Parameter names are those of the official checkpoint with the `vocoder.` prefix removed (19B: `conv_pre.*`,
`ups.*`, `resblocks.*`, `conv_post.*`; 2.3: `vocoder.*`, `bwe_generator.*`, `mel_stft.*`). The anti-aliasing
filters and the STFT / mel bases are stored in the file and loaded like weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.runtime.errors import CheckpointError, ConfigurationError

HIFIGAN_SLOPE = 0.1
POST_SLOPE = 0.01  # the last activation before conv_post is a default nn.LeakyReLU


@dataclass(frozen=True)
class GeneratorConfig:
    """One mel -> waveform generator (ltx-core `config["vocoder"]` names in the comments)."""

    channels: int = 1024  # upsample_initial_channel
    rates: tuple[int, ...] = (6, 5, 2, 2, 2)  # upsample_rates
    kernels: tuple[int, ...] = (16, 15, 8, 4, 4)  # upsample_kernel_sizes
    res_kernels: tuple[int, ...] = (3, 7, 11)  # resblock_kernel_sizes
    dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5),) * 3  # resblock_dilation_sizes
    amp: bool = False  # resblock == "AMP1" (BigVGAN-v2 with SnakeBeta)
    final: str = "tanh"  # tanh | clamp | none
    final_bias: bool = True  # use_bias_at_final
    in_channels: int = 128
    out_channels: int = 2


@dataclass(frozen=True)
class BWEConfig:
    """Bandwidth extension: causal STFT of the low-rate waveform, mel, second generator, x-rate resampling."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    n_fft: int = 512
    hop: int = 80
    mels: int = 64
    input_rate: int = 16000
    output_rate: int = 48000


# ------------------------------------------------------------------------------------------- filters
@functools.cache
def _kaiser_sinc(cutoff: float, half_width: float, size: int) -> torch.Tensor:
    with torch.device("cpu"):  # computed once, on the CPU even while a model is built on meta
        return kaiser_sinc(cutoff, half_width, size)


def kaiser_sinc(cutoff: float, half_width: float, size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter [1, 1, size] with unit DC gain (BigVGAN's alias-free filter)."""
    half = size // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(size, beta=beta, periodic=False)
    t = torch.arange(-half, half) + 0.5 if size % 2 == 0 else torch.arange(size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, size)


def hann_sinc(ratio: int, zero_crossings: int = 6, rolloff: float = 0.99) -> tuple[torch.Tensor, int]:
    """Hann-windowed sinc interpolation filter for x`ratio` upsampling (torchaudio-style) and its half width."""
    width = math.ceil(zero_crossings / rolloff)
    t = (torch.arange(2 * width * ratio + 1) / ratio - width) * rolloff
    window = torch.cos(t.clamp(-zero_crossings, zero_crossings) * math.pi / zero_crossings / 2) ** 2
    return (torch.sinc(t) * window * rolloff / ratio).view(1, 1, -1), width


class Upsample1d(nn.Module):
    """x`ratio` by zero-stuffing and low-pass filtering (`filter` is stored in the checkpoint)."""

    def __init__(self, ratio: int = 2, size: int = 12) -> None:
        super().__init__()
        self.ratio = ratio
        self.pad = size // ratio - 1
        self.crop = (self.pad * ratio + (size - ratio) // 2, self.pad * ratio + (size - ratio + 1) // 2)
        self.register_buffer("filter", _kaiser_sinc(0.5 / ratio, 0.6 / ratio, size).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        taps = self.filter.to(x).expand(x.shape[1], -1, -1)
        x = self.ratio * F.conv_transpose1d(x, taps, stride=self.ratio, groups=x.shape[1])
        return x[..., self.crop[0] : -self.crop[1]]


class LowPass1d(nn.Module):
    def __init__(self, ratio: int, size: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.pads = (size // 2 - int(size % 2 == 0), size // 2)
        self.register_buffer("filter", _kaiser_sinc(0.5 / ratio, 0.6 / ratio, size).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.pads, mode="replicate")
        return F.conv1d(x, self.filter.to(x).expand(x.shape[1], -1, -1), stride=self.ratio, groups=x.shape[1])


class Downsample1d(nn.Module):
    def __init__(self, ratio: int = 2, size: int = 12) -> None:
        super().__init__()
        self.lowpass = LowPass1d(ratio, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class SnakeBeta(nn.Module):
    """x + sin^2(x e^alpha) / e^beta, per channel (log-scale parameters)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha.exp()[:, None], self.beta.exp()[:, None]
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


class AntiAliased(nn.Module):
    """SnakeBeta at twice the rate: upsample x2, activate, low-pass and decimate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = Upsample1d()
        self.downsample = Downsample1d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


# ------------------------------------------------------------------------------------------- generator
def _conv(channels: int, kernel: int, dilation: int) -> nn.Conv1d:
    return nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)


class ResBlock(nn.Module):
    """Three (activation, dilated conv, activation, conv) residual steps; HiFi-GAN ResBlock1 or BigVGAN AMP1."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int], amp: bool) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(_conv(channels, kernel, d) for d in dilations)
        self.convs2 = nn.ModuleList(_conv(channels, kernel, 1) for _ in dilations)
        self.acts1 = nn.ModuleList(AntiAliased(channels) for _ in dilations) if amp else None
        self.acts2 = nn.ModuleList(AntiAliased(channels) for _ in dilations) if amp else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            h = self.acts1[i](x) if self.acts1 is not None else F.leaky_relu(x, HIFIGAN_SLOPE)
            h = conv1(h)
            h = self.acts2[i](h) if self.acts2 is not None else F.leaky_relu(h, HIFIGAN_SLOPE)
            x = x + conv2(h)
        return x


class Generator(nn.Module):
    """conv_pre -> per stage: transposed-conv upsample, mean of the parallel residual blocks -> conv_post."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv_pre = nn.Conv1d(cfg.in_channels, cfg.channels, 7, padding=3)
        widths = [cfg.channels // 2**i for i in range(len(cfg.rates) + 1)]
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(widths[i], widths[i + 1], k, r, padding=(k - r) // 2)
            for i, (r, k) in enumerate(zip(cfg.rates, cfg.kernels, strict=True))
        )
        self.resblocks = nn.ModuleList(
            ResBlock(widths[i + 1], k, d, cfg.amp)
            for i in range(len(cfg.rates))
            for k, d in zip(cfg.res_kernels, cfg.dilations, strict=True)
        )
        self.act_post = AntiAliased(widths[-1]) if cfg.amp else None
        self.conv_post = nn.Conv1d(widths[-1], cfg.out_channels, 7, padding=3, bias=cfg.final_bias)

    @property
    def hop(self) -> int:
        return math.prod(self.cfg.rates)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(rearrange(mel, "b s t m -> b (s m) t"))
        per_stage = len(self.cfg.res_kernels)
        for i, up in enumerate(self.ups):
            x = up(x if self.cfg.amp else F.leaky_relu(x, HIFIGAN_SLOPE))
            blocks = self.resblocks[i * per_stage : (i + 1) * per_stage]
            x = torch.stack([block(x) for block in blocks]).mean(dim=0)
        x = self.act_post(x) if self.act_post is not None else F.leaky_relu(x, POST_SLOPE)
        x = self.conv_post(x)
        if self.cfg.final == "tanh":
            return torch.tanh(x)
        return x.clamp(-1, 1) if self.cfg.final == "clamp" else x


class HifiGanVocoder(Generator):
    """LTX-2 19B vocoder (module names = the checkpoint's `vocoder.*` keys without the prefix)."""

    def __init__(self, cfg: GeneratorConfig, sample_rate: int = 24000) -> None:
        super().__init__(cfg)
        self.sample_rate = sample_rate

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return super().forward(_check_mel(mel, self.cfg))


class CausalMel(nn.Module):
    """Causal log-mel: left-padded STFT by convolution with stored DFT x window bases, stored mel matrix."""

    def __init__(self, n_fft: int, hop: int, mels: int) -> None:
        super().__init__()
        self.hop = hop
        self.n_fft = n_fft
        self.stft_fn = nn.Module()
        self.stft_fn.register_buffer("forward_basis", torch.zeros(2 * (n_fft // 2 + 1), 1, n_fft))
        self.register_buffer("mel_basis", torch.zeros(mels, n_fft // 2 + 1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """[N, T] -> log-mel [N, mels, frames]."""
        x = F.pad(audio[:, None], (max(0, self.n_fft - self.hop), 0))
        spec = F.conv1d(x, self.stft_fn.forward_basis.to(x), stride=self.hop)
        real, imag = spec.chunk(2, dim=1)
        magnitude = torch.sqrt(real * real + imag * imag)
        return torch.log(torch.clamp(self.mel_basis.to(x) @ magnitude, min=1e-5))


class BWEVocoder(nn.Module):
    """LTX-2.3 vocoder + bandwidth extension (module names = `vocoder.*` keys without the first `vocoder.`)."""

    def __init__(self, vocoder: GeneratorConfig, bwe: BWEConfig) -> None:
        super().__init__()
        if bwe.output_rate % bwe.input_rate:
            raise CheckpointError(f"BWE rates {bwe.input_rate} -> {bwe.output_rate} Hz are not an integer ratio.")
        self.bwe = bwe
        self.vocoder = Generator(vocoder)
        self.bwe_generator = Generator(bwe.generator)
        self.mel_stft = CausalMel(bwe.n_fft, bwe.hop, bwe.mels)
        self.ratio = bwe.output_rate // bwe.input_rate
        with torch.device("cpu"):  # not stored in the file: computed even when the module is built on meta
            taps, self.resample_pad = hann_sinc(self.ratio)
        self.register_buffer("resample_filter", taps, persistent=False)
        self.sample_rate = bwe.output_rate

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        size, r, pad = self.resample_filter.shape[-1], self.ratio, self.resample_pad
        x = F.pad(x, (pad, pad), mode="replicate")
        taps = self.resample_filter.to(x).expand(x.shape[1], -1, -1)
        x = r * F.conv_transpose1d(x, taps, stride=r, groups=x.shape[1])
        return x[..., 2 * pad * r : -(size - r)]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.vocoder(_check_mel(mel, self.vocoder.cfg))
        length = x.shape[-1] * self.ratio
        x = F.pad(x, (0, -x.shape[-1] % self.bwe.hop))
        bwe_mel = rearrange(self.mel_stft(x.flatten(0, 1)), "(b s) m t -> b s t m", b=x.shape[0])
        return torch.clamp(self.bwe_generator(bwe_mel) + self._resample(x), -1, 1)[..., :length]


def _check_mel(mel: torch.Tensor, cfg: GeneratorConfig) -> torch.Tensor:
    if mel.ndim != 4 or mel.shape[1] * mel.shape[3] != cfg.in_channels:
        raise ConfigurationError(
            f"The LTX-2 vocoder takes stereo log-mel spectrograms shaped [B, 2, T, {cfg.in_channels // 2}], "
            f"got {list(mel.shape)}."
        )
    return mel


# ------------------------------------------------------------------------------------------- configuration
# Upsample strides are not visible in the weights: released kernel lists -> their strides.
KNOWN_RATES = {
    (16, 15, 8, 4, 4): (6, 5, 2, 2, 2),
    (11, 4, 4, 4, 4, 4): (5, 2, 2, 2, 2, 2),
    (12, 11, 4, 4, 4): (6, 5, 2, 2, 2),
}


def _generator_config(shapes: Mapping[str, Sequence[int]], prefix: str, header: Mapping, bwe: bool) -> GeneratorConfig:
    ups = sorted({int(k[len(prefix) + 4 :].split(".")[0]) for k in shapes if k.startswith(prefix + "ups.")})
    kernels = tuple(shapes[f"{prefix}ups.{i}.weight"][2] for i in ups)
    per_stage = len({int(k[len(prefix) + 10 :].split(".")[0]) for k in shapes if k.startswith(prefix + "resblocks.")})
    per_stage //= max(len(ups), 1)
    res_kernels = tuple(shapes[f"{prefix}resblocks.{j}.convs1.0.weight"][2] for j in range(per_stage))
    rates = tuple(header.get("upsample_rates", ())) or KNOWN_RATES.get(kernels)
    if rates is None:
        raise CheckpointError(
            f"The vocoder's upsample kernels {list(kernels)} are not a released LTX-2 layout and its file has no "
            "config header giving the upsample rates; use the official checkpoint or Kijai's extracted file."
        )
    amp = f"{prefix}resblocks.0.acts1.0.act.alpha" in shapes
    # ltx-core: tanh unless the header says use_tanh_at_final: false; without a header BigVGAN files clamp
    final = "none" if bwe else ("tanh" if header.get("use_tanh_at_final", bool(header) or not amp) else "clamp")
    return GeneratorConfig(
        channels=shapes[f"{prefix}conv_pre.weight"][0],
        rates=tuple(rates),
        kernels=kernels,
        res_kernels=res_kernels,
        dilations=tuple(tuple(d) for d in header.get("resblock_dilation_sizes", ((1, 3, 5),) * per_stage)),
        amp=amp,
        final=final,
        final_bias=f"{prefix}conv_post.bias" in shapes,
        in_channels=shapes[f"{prefix}conv_pre.weight"][1],
        out_channels=shapes[f"{prefix}conv_post.weight"][0],
    )


def build_vocoder(shapes: Mapping[str, Sequence[int]], header: Mapping | None = None) -> HifiGanVocoder | BWEVocoder:
    """The vocoder for a state dict (keys without the file's first `vocoder.`) and its `config["vocoder"]`."""
    header = header or {}
    if "mel_stft.mel_basis" in shapes:
        bwe_header = header.get("bwe", {})
        basis = shapes["mel_stft.mel_basis"]
        bwe = BWEConfig(
            generator=_generator_config(shapes, "bwe_generator.", bwe_header, bwe=True),
            n_fft=bwe_header.get("n_fft", (basis[1] - 1) * 2),
            hop=bwe_header.get("hop_length", 80),
            mels=basis[0],
            input_rate=bwe_header.get("input_sampling_rate", 16000),
            output_rate=bwe_header.get("output_sampling_rate", 48000),
        )
        return BWEVocoder(_generator_config(shapes, "vocoder.", header.get("vocoder", {}), bwe=False), bwe)
    if "conv_pre.weight" not in shapes:
        raise CheckpointError(
            "This is not an LTX-2 vocoder (no conv_pre); pick the LTX-2 checkpoint or its audio file."
        )
    return HifiGanVocoder(_generator_config(shapes, "", header, bwe=False), header.get("output_sampling_rate", 24000))
