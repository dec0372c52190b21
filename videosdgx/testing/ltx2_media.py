"""Tiny random LTX-2 media models (video VAE, audio VAE, vocoder, latent upsampler) in the official key layout.

The state dicts carry the exact published names and prefixes (`vae.*` with all five `per_channel_statistics`
keys, `audio_vae.*`, `vocoder.*` with the 2.3 nesting and stored filters / STFT bases, bare upsampler keys),
so they can be merged into a tiny single-file checkpoint (`media_checkpoint_state` + `media_config`) or written
as Kijai-style split files. The block structure is the real one (19B or 2.3) at toy widths; the vocoders keep
the released strides and kernels so that no config header is needed to load them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from videosdgx.ltx2.audio_mel import mel_filterbank
from videosdgx.ltx2.audio_vae import AudioVAEConfig, LTX2AudioVAE
from videosdgx.ltx2.upsampler import LTX2LatentUpsampler, UpsamplerConfig
from videosdgx.ltx2.video_vae import Block, LTX2VideoVAE, VideoVAEConfig
from videosdgx.ltx2.vocoder import BWEConfig, BWEVocoder, GeneratorConfig, HifiGanVocoder
from videosdgx.testing.files import save_safetensors

LAYOUTS = ("19b", "2.3")
ALL, SPACE, TIME = (2, 2, 2), (1, 2, 2), (2, 1, 1)
EXTRA_STATS = ("channel", "mean-of-stds", "mean-of-stds_over_std-of-means")  # in the release, unused


def video_vae_config(layout: str = "19b", latent_channels: int = 8, patch_size: int = 2) -> VideoVAEConfig:
    """Toy widths, real block lists: 19B (three residual x2 upsamplers, reflect padding) or 2.3 (four plain
    upsamplers incl. time-only and space-only, zeros padding). Compression: x8 time, x(8 * patch) space."""
    res = lambda n: Block("res", layers=n)  # noqa: E731
    encoder = (
        res(1),
        Block("down", stride=SPACE, multiplier=2),
        res(2),
        Block("down", stride=TIME, multiplier=2),
        res(1),
        Block("down", stride=ALL, multiplier=2),
        res(1),
        Block("down", stride=ALL, multiplier=2 if layout == "19b" else 1),
        res(2),
    )
    if layout == "19b":
        decoder = (
            res(2),
            Block("up", stride=ALL, multiplier=2, residual=True),
            res(1),
            Block("up", stride=ALL, multiplier=2, residual=True),
            res(2),
            Block("up", stride=ALL, multiplier=2, residual=True),
            res(1),
        )
    else:
        decoder = (
            res(2),
            Block("up", stride=ALL, multiplier=2),
            res(1),
            Block("up", stride=ALL, multiplier=1),
            res(1),
            Block("up", stride=TIME, multiplier=2),
            res(2),
            Block("up", stride=SPACE, multiplier=2),
            res(1),
        )
    return VideoVAEConfig(
        encoder_blocks=encoder,
        decoder_blocks=decoder,
        encoder_width=8,
        decoder_width=64,
        latent_channels=latent_channels,
        patch_size=patch_size,
        decoder_padding="reflect" if layout == "19b" else "zeros",
    )


def audio_vae_config(latent_channels: int = 4, mel_bins: int = 16) -> AudioVAEConfig:
    return AudioVAEConfig(
        base_channels=16, ch_mult=(1, 2, 3), num_res_blocks=2, latent_channels=latent_channels, mel_bins=mel_bins
    )


def vocoder_configs(layout: str = "19b", mel_bins: int = 16) -> tuple[GeneratorConfig, BWEConfig | None]:
    """Released strides / kernels / dilations at toy widths (2.3's BWE: 8 mel bands instead of 64)."""
    if layout == "19b":
        return GeneratorConfig(channels=64, in_channels=2 * mel_bins), None
    main = GeneratorConfig(
        channels=128,
        rates=(5, 2, 2, 2, 2, 2),
        kernels=(11, 4, 4, 4, 4, 4),
        amp=True,
        final="clamp",
        final_bias=False,
        in_channels=2 * mel_bins,
    )
    bwe = GeneratorConfig(
        channels=64,
        rates=(6, 5, 2, 2, 2),
        kernels=(12, 11, 4, 4, 4),
        amp=True,
        final="none",
        final_bias=False,
        in_channels=16,
    )
    return main, BWEConfig(generator=bwe, n_fft=512, hop=80, mels=8)


def _randomized(module: nn.Module, seed: int, std: float = 0.2) -> dict[str, torch.Tensor]:
    """The module's state dict with random parameters; buffers (filters, bases) keep their real values."""
    generator = torch.Generator().manual_seed(seed)
    params = dict(module.named_parameters())
    out = {}
    for name, tensor in module.state_dict().items():
        out[name] = torch.randn(tensor.shape, generator=generator) * std if name in params else tensor.clone()
    return out


def _stats(state: dict[str, torch.Tensor], prefix: str, seed: int, extra: bool) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    width = state.pop("latents_mean").shape[0]
    state.pop("latents_std")
    out = {
        f"{prefix}per_channel_statistics.mean-of-means": torch.randn(width, generator=generator) * 0.3,
        f"{prefix}per_channel_statistics.std-of-means": torch.rand(width, generator=generator) + 0.5,
    }
    if extra:
        out.update(
            {f"{prefix}per_channel_statistics.{name}": torch.rand(width, generator=generator) for name in EXTRA_STATS}
        )
    return out


def video_vae_state(layout: str = "19b", seed: int = 0, latent_channels: int = 8, prefix: str = "vae.") -> dict:
    """`vae.encoder.*`, `vae.decoder.*`, `vae.per_channel_statistics.*` (prefix "" = bare split file)."""
    state = _randomized(LTX2VideoVAE(video_vae_config(layout, latent_channels)), seed)
    stats = _stats(state, prefix, seed + 1, extra=True)
    return {f"{prefix}{k}": v for k, v in state.items()} | stats


def audio_vae_state(seed: int = 0, latent_channels: int = 4, mel_bins: int = 16) -> dict:
    """`audio_vae.encoder.*`, `audio_vae.decoder.*`, `audio_vae.per_channel_statistics.*`."""
    state = _randomized(LTX2AudioVAE(audio_vae_config(latent_channels, mel_bins)), seed)
    stats = _stats(state, "audio_vae.", seed + 1, extra=False)
    return {f"audio_vae.{k}": v for k, v in state.items()} | stats


def causal_stft_basis(n_fft: int) -> torch.Tensor:
    """DFT rows (real parts, then imaginary parts) times a periodic Hann window: [2 (n_fft/2 + 1), 1, n_fft]."""
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    phase = 2 * math.pi * freqs * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return (torch.cat([torch.cos(phase), -torch.sin(phase)]) * window)[:, None].float()


def vocoder_state(layout: str = "19b", seed: int = 0, mel_bins: int = 16) -> dict:
    """`vocoder.*`: 19B flat HiFi-GAN; 2.3 `vocoder.vocoder.*`, `vocoder.bwe_generator.*`, `vocoder.mel_stft.*`."""
    main, bwe = vocoder_configs(layout, mel_bins)
    module = HifiGanVocoder(main) if bwe is None else BWEVocoder(main, bwe)
    state = _randomized(module, seed, std=0.1)
    if bwe is not None:
        state["mel_stft.stft_fn.forward_basis"] = causal_stft_basis(bwe.n_fft)
        state["mel_stft.stft_fn.inverse_basis"] = causal_stft_basis(bwe.n_fft)
        state["mel_stft.mel_basis"] = mel_filterbank(bwe.input_rate, bwe.n_fft, bwe.mels).T.float().contiguous()
    return {f"vocoder.{k}": v for k, v in state.items()}


def upsampler_state(seed: int = 0, latent_channels: int = 8, mid_channels: int = 32, blocks: int = 2,
                    mode: str = "spatial") -> dict:
    """Spatial (or `mode` "temporal") x2 upsampler (`initial_conv`, `res_blocks`, `upsampler.0`,
    `post_upsample_res_blocks`, ...)."""
    module = LTX2LatentUpsampler(UpsamplerConfig(in_channels=latent_channels, mid_channels=mid_channels, blocks=blocks,
                                                 mode=mode))
    return _randomized(module, seed, std=0.1)


def upsampler_header(state: dict) -> dict:
    """The `config` header ltx-core's `LatentUpsamplerConfigurator` reads, for an x2 `upsampler_state`."""
    initial = state["initial_conv.weight"].shape
    temporal = state["upsampler.0.weight"].ndim == 5
    config = {"in_channels": initial[1], "mid_channels": initial[0],
              "num_blocks_per_stage": len({k.split(".")[1] for k in state if k.startswith("res_blocks.")}),
              "dims": 3, "spatial_upsample": not temporal, "temporal_upsample": temporal, "spatial_scale": 2.0,
              "rational_resampler": False}
    return {"config": json.dumps(config)}


def media_checkpoint_state(
    layout: str = "19b",
    seed: int = 0,
    video_latent_channels: int = 8,
    audio_latent_channels: int = 4,
    mel_bins: int = 16,
) -> dict:
    """Every media component of a single-file checkpoint, with its prefix (merge with the DiT's tensors)."""
    return (
        video_vae_state(layout, seed, video_latent_channels)
        | audio_vae_state(seed + 10, audio_latent_channels, mel_bins)
        | vocoder_state(layout, seed + 20, mel_bins)
    )


def media_config(layout: str = "19b") -> dict:
    """The `vae` / `vocoder` parts of the checkpoint's `config` header for these toy models (ltx-core names)."""
    cfg = video_vae_config(layout)
    names = {SPACE: "space", TIME: "time", ALL: "all"}

    def entry(block: Block, encoder: bool) -> list:
        if block.kind == "res":
            return ["res_x", {"num_layers": block.layers}]
        name = f"compress_{names[block.stride]}" + ("_res" if encoder else "")
        return [name, {"multiplier": block.multiplier, "residual": block.residual}]

    vae = {
        "encoder_blocks": [entry(b, True) for b in cfg.encoder_blocks],
        "decoder_blocks": [entry(b, False) for b in reversed(cfg.decoder_blocks)],
        "spatial_padding_mode": cfg.decoder_padding,
        "causal_decoder": False,
    }
    main, bwe = vocoder_configs(layout)

    def generator(g: GeneratorConfig) -> dict:
        return {
            "upsample_rates": list(g.rates),
            "upsample_kernel_sizes": list(g.kernels),
            "resblock_kernel_sizes": list(g.res_kernels),
            "resblock_dilation_sizes": [list(d) for d in g.dilations],
            "upsample_initial_channel": g.channels,
            "resblock": "AMP1" if g.amp else "1",
            "use_tanh_at_final": g.final == "tanh",
            "use_bias_at_final": g.final_bias,
            "stereo": True,
        }

    if bwe is None:
        vocoder = generator(main) | {"output_sampling_rate": 24000}
    else:
        vocoder = {
            "vocoder": generator(main) | {"activation": "snakebeta"},
            "bwe": generator(bwe.generator)
            | {
                "activation": "snakebeta",
                "n_fft": bwe.n_fft,
                "hop_length": bwe.hop,
                "num_mels": bwe.mels,
                "input_sampling_rate": bwe.input_rate,
                "output_sampling_rate": bwe.output_rate,
            },
        }
    return {"vae": vae, "vocoder": vocoder}


def write_split_files(folder: str | Path, layout: str = "19b", seed: int = 0) -> dict[str, Path]:
    """Kijai-style split files: `<layout>_video_vae.safetensors` (bare keys for 2.3, `vae.*` for 19B),
    `<layout>_audio_vae.safetensors` (`audio_vae.*` + `vocoder.*`) and the x2 upsampler, without headers."""
    folder = Path(folder)
    video = video_vae_state(layout, seed, prefix="" if layout == "2.3" else "vae.")
    audio = audio_vae_state(seed + 10) | vocoder_state(layout, seed + 20)
    return {
        "vae": save_safetensors(folder / f"ltx{layout}_video_vae.safetensors", video),
        "audio_vae": save_safetensors(folder / f"ltx{layout}_audio_vae.safetensors", audio),
        "upsampler": save_safetensors(folder / "ltx-2-spatial-upscaler-x2.safetensors", upsampler_state(seed + 30)),
    }
