"""Loading the SkyReels V3 DiTs: Wan 2.1 14B T2V-shaped files, told apart by the layout each release ships.

R2V-14B ships diffusers keys (`transformer/diffusion_pytorch_model.safetensors`); V2V-14B ships the original Wan
keys (`transformer/`, `shot_transformer/`). Their weights have the same names and shapes as Wan2.1 T2V-14B, so
the layout is the only thing that tells an R2V file from a V2V one.
"""

from __future__ import annotations

import dataclasses
import os

from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.skyreels_v3.avatar import AvatarModel, avatar_config_from_shapes
from videosdgx.skyreels_v3.wav2vec2 import Wav2Vec2Encoder, wav2vec2_key
from videosdgx.skyreels_v3.wav2vec2 import config_from_shapes as wav2vec2_config
from videosdgx.runtime.errors import WrongComponentError
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file
from videosdgx.wan.keys import detect_dit_layout, to_official_key
from videosdgx.wan.transformer import WanConfig, WanModel, config_from_shapes, heads_from_metadata

R2V_LOADER = "the SkyReels V3 R2V loader"
A2V_LOADER = "the SkyReels V3 avatar loader"
AUDIO_LOADER = "the SkyReels V3 audio encoder loader"
V2V_LOADER = "the SkyReels V3 V2V loader"
V2V_ROPE_POSITIONS = 2048  # the extension model's RoPE table (context frames sit at 1024 +)
_LAYOUT_OF = {"r2v": ("diffusers",), "v2v": ("official", "comfyui")}
_RELEASE = {
    "r2v": "SkyReels V3 R2V-14B (diffusers keys, Skywork/SkyReels-V3-R2V-14B transformer/)",
    "v2v": "SkyReels V3 V2V-14B (original Wan keys, Skywork/SkyReels-V3-V2V-14B transformer/ or shot_transformer/)",
}


def _check_layout(task: str, checkpoint: Checkpoint) -> str:
    layout = detect_dit_layout(checkpoint.keys())
    if layout not in _LAYOUT_OF[task]:
        other = "v2v" if task == "r2v" else "r2v"
        raise WrongComponentError(
            f"{checkpoint.name} has the {layout} key layout of {_RELEASE[other]}, not of {_RELEASE[task]}. "
            f"Give this loader the {task.upper()} file (see `python install.py --list`, bundle skyreels-v3-{task}-14b)."
        )
    return layout


def _check_config(task: str, cfg: WanConfig, name: str) -> WanConfig:
    if cfg.model_type != "t2v" or cfg.in_dim != 16 or cfg.out_dim != 16:
        raise WrongComponentError(
            f"{name} is a Wan {cfg.model_type.upper()} DiT with {cfg.in_dim} input channels; {_RELEASE[task]} is a "
            "text-to-video-shaped Wan 2.1 DiT with 16 input channels."
        )
    if task == "v2v":
        cfg = dataclasses.replace(cfg, rope_max_positions=V2V_ROPE_POSITIONS, rope_fp32=True)
    return cfg


def load_skyreels_dit(task: str, path: str | os.PathLike, request: LoadRequest) -> LoadedModel:
    """The R2V (`task="r2v"`) or V2V (`task="v2v"`) DiT; the wrong release's file is refused before loading."""
    loader = R2V_LOADER if task == "r2v" else V2V_LOADER

    def key_map(checkpoint: Checkpoint):
        layout = _check_layout(task, checkpoint)
        return lambda key: to_official_key(key, layout)

    def build(shapes, checkpoint: Checkpoint):
        cfg = config_from_shapes(shapes, heads_from_metadata(checkpoint.metadata))
        return WanModel(_check_config(task, cfg, checkpoint.name))

    return load_model_file(path, family="wan", component="transformer", loader=loader, request=request,
                           key_map=key_map, build=build)


def load_avatar_dit(path: str | os.PathLike, request: LoadRequest) -> LoadedModel:
    """The A2V-19B DiT (original Wan keys plus the audio layers; also with the ComfyUI prefix)."""

    def key_map(checkpoint: Checkpoint):
        layout = detect_dit_layout(checkpoint.keys())
        return lambda key: to_official_key(key, layout)

    return load_model_file(path, family="skyreels_v3", component="transformer", loader=A2V_LOADER, request=request,
                           key_map=key_map, build=lambda shapes, checkpoint: AvatarModel(
                               avatar_config_from_shapes(shapes, heads_from_metadata(checkpoint.metadata))))


def load_wav2vec2(path: str | os.PathLike, request: LoadRequest) -> LoadedModel:
    """The avatar's wav2vec2 encoder (`chinese-wav2vec2-base/`: a file or the folder)."""
    return load_model_file(path, family="skyreels_v3", component="audio encoder", loader=AUDIO_LOADER,
                           request=request, key_map=lambda checkpoint: wav2vec2_key,
                           build=lambda shapes, _: Wav2Vec2Encoder(wav2vec2_config(shapes)))
