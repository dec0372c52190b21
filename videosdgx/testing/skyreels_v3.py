"""Tiny random SkyReels V3 checkpoints in the published key layouts, where a manifest bundle's lookup finds them.

R2V-14B's DiT is written with diffusers keys, V2V-14B's and A2V-19B's with the original Wan keys (the avatar's
audio layers under the release's names); the avatar's wav2vec2 with Hugging Face `Wav2Vec2Model` keys (12 layers, as
the avatar's audio projector expects, 64 wide); the UMT5 text encoder, the Wan 2.1 VAE and CLIP vision are the
shared Wan fixtures. Folder entries are written as the installer leaves them (files + its record). The weights are random: a video made from them is noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from videosdgx.bundle_files import BundleFiles, find_bundle_files
from videosdgx.install.comfyui import model_folders
from videosdgx.manifest import load_manifest
from videosdgx.skyreels_v3.variants import skyreels_variant
from videosdgx.testing.files import save_folder_entry, save_safetensors
from videosdgx.skyreels_v3.avatar import AvatarConfig, AvatarModel
from videosdgx.skyreels_v3.wav2vec2 import Wav2Vec2Config, Wav2Vec2Encoder
from videosdgx.testing.files import random_like_state_dict
from videosdgx.testing.wan import _clip_state, _dit_state, _store, _text_encoder_state, _vae_state, tiny_dit_config
from videosdgx.wan.keys import to_diffusers_key

DIFFUSERS_LAYOUT_TASKS = ("r2v",)
# 64 wide: one head of 64, as the loader reads a released wav2vec 2.0 (heads are 64 wide).
TINY_WAV2VEC2 = Wav2Vec2Config(hidden=64, layers=12, heads=1, intermediate=64, conv_dims=(16,) * 6 + (32,),
                               position_kernel=16, position_groups=4)


def skyreels_dit_state(task: str, seed: int) -> dict[str, torch.Tensor]:
    """A tiny Wan T2V-shaped DiT (width 256, 2 heads of 128, 2 layers) in the layout the `task`'s release ships."""
    state = _dit_state(tiny_dit_config("t2v", "2.1", False), seed)
    if task in DIFFUSERS_LAYOUT_TASKS:
        return {to_diffusers_key(key): value for key, value in state.items()}
    return state


def avatar_dit_state(seed: int) -> dict[str, torch.Tensor]:
    """A tiny A2V DiT: the tiny Wan I2V DiT plus the audio layers for `TINY_WAV2VEC2` features (4 audio tokens)."""
    cfg = AvatarConfig(wan=tiny_dit_config("i2v", "2.1", True), audio_channels=TINY_WAV2VEC2.hidden,
                       intermediate_dim=16, audio_dim=32, context_tokens=4)
    with torch.device("meta"):
        model = AvatarModel(cfg)
    return random_like_state_dict(model, seed, std=0.05)


def wav2vec2_state(seed: int) -> dict[str, torch.Tensor]:
    """`TINY_WAV2VEC2` (module names are the checkpoint's: the position convolution as `weight_g` / `weight_v`)."""
    with torch.device("meta"):
        model = Wav2Vec2Encoder(TINY_WAV2VEC2)
    return random_like_state_dict(model, seed, std=0.1)


def write_skyreels_bundle(bundle: str, models_dir: str | Path, seed: int = 0) -> BundleFiles:
    """Write every file of a SkyReels V3 manifest bundle under `models_dir/<folder>/<filename>`."""
    manifest = load_manifest()
    task = skyreels_variant(manifest.bundle(bundle).variant or bundle).task
    models_dir = Path(models_dir)
    builders = {
        "dit": lambda: avatar_dit_state(seed) if task == "a2v" else skyreels_dit_state(task, seed),
        "dit_shot": lambda: skyreels_dit_state(task, seed + 1),
        "text_encoder": lambda: _text_encoder_state(seed + 10),
        "vae": lambda: _vae_state("2.1", seed + 20),
        "clip_vision": lambda: _clip_state(seed + 30),
        "audio_encoder": lambda: wav2vec2_state(seed + 40),
    }
    for entry in manifest.bundle_entries(bundle):
        if entry.role not in builders:
            raise NotImplementedError(f"no tiny fixture for {entry.filename} ({entry.role})")
        state = _store(builders[entry.role](), entry.filename)
        if entry.is_folder:  # listed on the Hub at install time: written as the installer leaves it
            save_folder_entry(models_dir, entry, state, **FOLDER_LAYOUTS[entry.role])
        else:
            save_safetensors(models_dir / entry.folder / entry.filename, state)
    return find_bundle_files(bundle, model_folders(models_dir=models_dir), manifest)


# How the demo writes each folder entry: the DiTs in the diffusers-style layout of their repo folders (the main DiT
# sharded with an index, the shot DiT as one file), wav2vec2 as a transformers model folder; each with a config.json.
_DIT_CONFIG = json.dumps({"_class_name": "WanModel", "model_type": "t2v", "note": "tiny random demo weights"})
FOLDER_LAYOUTS = {
    "dit": {"shards": 2, "extra": {"config.json": _DIT_CONFIG}},
    "dit_shot": {"extra": {"config.json": _DIT_CONFIG}},
    "audio_encoder": {"stem": "model", "extra": {"config.json": json.dumps({"model_type": "wav2vec2"})}},
}


def seeded_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """float32 values for named shapes, drawn key by key in sorted order (independent of any module's order, so
    the official modules and ours get the same numbers): scales and gammas near 1, matrices ~1/sqrt(fan-in)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        values = torch.randn(shape, generator=generator)
        leaf = key.rsplit(".", 2)
        if key.endswith("gamma") or ("norm" in leaf[-2] and key.endswith("weight")):
            values = 1 + 0.1 * values
        elif len(shape) >= 2 and not key.endswith("modulation"):
            values = values / (values[0].numel() ** 0.5)
        else:
            values = 0.2 * values
        out[key] = values
    return out
