"""Loading the LTX-2 media models from the official single file, split component files or diffusers folders.

Each loader identifies the file, refuses the wrong one, builds the module on meta from the file's `config`
header (or its tensor shapes) and streams the weights in through `runtime.model_files.load_model_file`.
"""

from __future__ import annotations

import json
import logging
import os

from videosdgx.ltx2 import diffusion_decoder_files as files25
from videosdgx.ltx2.audio_vae import LTX2AudioVAE, audio_config_from_shapes
from videosdgx.ltx2.diffusion_decoder import DiffusionVideoDecoder
from videosdgx.ltx2.media_keys import audio_vae_key_map, video_vae_key_map, vocoder_key_map
from videosdgx.ltx2.upsampler import LTX2LatentUpsampler, upsampler_config
from videosdgx.ltx2.video_vae import LTX2VideoVAE, config_from_checkpoint
from videosdgx.ltx2.vocoder import build_vocoder
from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.identify import expect, identify
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file

log = logging.getLogger(__name__)
PathLike = str | os.PathLike
VIDEO_VAE_LOADER = "the LTX-2 video VAE loader"
AUDIO_VAE_LOADER = "the LTX-2 audio VAE loader"
VOCODER_LOADER = "the LTX-2 vocoder loader"
UPSAMPLER_LOADER = "the LTX-2 latent upsampler loader"
DIFFUSION_DECODER_LOADER = "the LTX-2.5 diffusion video decoder loader"


def header(checkpoint: Checkpoint, part: str | None = None) -> dict:
    """The `config` JSON of an LTX-2 safetensors header (ltx-core), or one part of it; {} when absent."""
    try:
        config = json.loads(checkpoint.metadata.get("config", "{}"))
    except json.JSONDecodeError:
        log.warning("%s: unreadable config header; using the tensor shapes", checkpoint.name)
        return {}
    config = config if isinstance(config, dict) else {}
    return config.get(part, {}) if part else config


def _component(path: PathLike, accepted: tuple[str, ...], loader: str) -> str:
    """Which of the `accepted` LTX-2 components the file is (a single file holds all media components)."""
    with open_checkpoint(path) as checkpoint:
        identity = identify(checkpoint)
    if identity.family == "ltx2" and identity.component in accepted:
        return identity.component
    expect(identity, "ltx2", accepted[-1], str(path), loader)  # raises, naming the right loader
    raise AssertionError("unreachable")


def load_video_vae(path: PathLike, request: LoadRequest) -> LoadedModel:
    """Video VAE from the checkpoint (`vae.*`), a split video VAE file (`vae.*` or bare keys) or diffusers."""
    component = _component(path, ("checkpoint", "video VAE"), VIDEO_VAE_LOADER)
    return load_model_file(
        path,
        family="ltx2",
        component=component,
        loader=VIDEO_VAE_LOADER,
        request=request,
        key_map=lambda checkpoint: video_vae_key_map(checkpoint.keys()),
        build=lambda shapes, checkpoint: LTX2VideoVAE(config_from_checkpoint(shapes, header(checkpoint, "vae"))),
    )


def load_audio_vae(path: PathLike, request: LoadRequest, parts: tuple[str, ...] = ("decoder",)) -> LoadedModel:
    """Audio VAE `parts` (decoder, encoder) from the checkpoint or Kijai's audio file (`audio_vae.*`)."""
    component = _component(path, ("checkpoint", "audio VAE"), AUDIO_VAE_LOADER)
    return load_model_file(
        path,
        family="ltx2",
        component=component,
        loader=AUDIO_VAE_LOADER,
        request=request,
        key_map=lambda _: audio_vae_key_map(parts),
        build=lambda shapes, _: LTX2AudioVAE(audio_config_from_shapes(shapes), parts),
    )


def load_vocoder(path: PathLike, request: LoadRequest) -> LoadedModel:
    """Vocoder (19B HiFi-GAN, or 2.3 BigVGAN + BWE) from the checkpoint, Kijai's audio file or a vocoder file.

    Run it in float32 (ltx-core does: bf16 degrades the waveform through its many convolutions)."""
    component = _component(path, ("checkpoint", "audio VAE", "vocoder"), VOCODER_LOADER)
    return load_model_file(
        path,
        family="ltx2",
        component=component,
        loader=VOCODER_LOADER,
        request=request,
        key_map=lambda _: vocoder_key_map,
        build=lambda shapes, checkpoint: build_vocoder(shapes, header(checkpoint, "vocoder")),
    )


def load_upsampler(path: PathLike, request: LoadRequest) -> LoadedModel:
    """Latent upsampler file (spatial x2 / x1.5, temporal x2)."""
    return load_model_file(
        path,
        family="ltx2",
        component="latent upsampler",
        loader=UPSAMPLER_LOADER,
        request=request,
        key_map=lambda _: None,
        build=lambda shapes, checkpoint: LTX2LatentUpsampler(upsampler_config(shapes, header(checkpoint))),
    )


def load_diffusion_decoder(path: PathLike, request: LoadRequest) -> LoadedModel:
    """LTX-2.5's diffusion video decoder: the release's video VAE file (raw layout, config in its header) or a
    diffusers `LTX2VideoDiffusionDecoderModel` file (config.json beside it); see diffusion_decoder_files.py."""
    with open_checkpoint(path) as checkpoint:
        diffusers = files25.is_diffusers(checkpoint.keys())

    def build(shapes: dict, checkpoint: Checkpoint) -> DiffusionVideoDecoder:
        json_config = files25.read_config_json(checkpoint) if diffusers else None
        return DiffusionVideoDecoder(files25.config_from_files(shapes, header(checkpoint, "vae"), json_config))

    return load_model_file(
        path,
        family="ltx2",
        component="diffusion video decoder",
        loader=DIFFUSION_DECODER_LOADER,
        request=request,
        key_map=lambda _: files25.diffusers_key if diffusers else None,
        convert=None if diffusers else files25.convert_raw,
        build=build,
    )
