"""Tiny random SkyReels V3 checkpoints in the published key layouts, where a manifest bundle's lookup finds them.

R2V-14B's DiT is written with diffusers keys, V2V-14B's with the original Wan keys; the UMT5 text encoder and the
Wan 2.1 VAE are the shared Wan fixtures. The weights are random: a video made from them is noise.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videosdgx.bundle_files import BundleFiles, find_bundle_files
from videosdgx.install.comfyui import model_folders
from videosdgx.manifest import load_manifest
from videosdgx.skyreels_v3.variants import skyreels_variant
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.wan import _dit_state, _store, _text_encoder_state, _vae_state, tiny_dit_config
from videosdgx.wan.keys import to_diffusers_key

DIFFUSERS_LAYOUT_TASKS = ("r2v",)


def skyreels_dit_state(task: str, seed: int) -> dict[str, torch.Tensor]:
    """A tiny Wan T2V-shaped DiT (width 256, 2 heads of 128, 2 layers) in the layout the `task`'s release ships."""
    state = _dit_state(tiny_dit_config("t2v", "2.1", False), seed)
    if task in DIFFUSERS_LAYOUT_TASKS:
        return {to_diffusers_key(key): value for key, value in state.items()}
    return state


def write_skyreels_bundle(bundle: str, models_dir: str | Path, seed: int = 0) -> BundleFiles:
    """Write every file of a SkyReels V3 manifest bundle under `models_dir/<folder>/<filename>`."""
    manifest = load_manifest()
    task = skyreels_variant(manifest.bundle(bundle).variant or bundle).task
    models_dir = Path(models_dir)
    builders = {
        "dit": lambda: skyreels_dit_state(task, seed),
        "dit_shot": lambda: skyreels_dit_state(task, seed + 1),
        "text_encoder": lambda: _text_encoder_state(seed + 10),
        "vae": lambda: _vae_state("2.1", seed + 20),
    }
    for entry in manifest.bundle_entries(bundle):
        if entry.role not in builders:
            raise NotImplementedError(f"no tiny fixture for {entry.filename} ({entry.role})")
        save_safetensors(models_dir / entry.folder / entry.filename, _store(builders[entry.role](), entry.filename))
    return find_bundle_files(bundle, model_folders(models_dir=models_dir), manifest)


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
