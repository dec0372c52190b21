"""Find a Wan variant's model files in a ComfyUI models folder, by the names the manifest gives them."""

from __future__ import annotations

import os
from pathlib import Path

from videosdgx.install.comfyui import ModelFolders, model_folders
from videosdgx.manifest import Entry, Manifest, load_manifest
from videosdgx.runtime.errors import CheckpointError
from videosdgx.wan.pipeline import WanFiles
from videosdgx.wan.variants import WanVariant

ROLES = {"diffusion_models": "dit", "text_encoders": "text_encoder", "vae": "vae", "clip_vision": "clip_vision"}


def bundle_roles(variant: WanVariant, manifest: Manifest) -> dict[str, list[Entry]]:
    """The bundle's entries by role (dit, text_encoder, vae, clip_vision, tokenizer); DiT experts high first."""
    roles: dict[str, list[Entry]] = {}
    for entry in manifest.bundle_entries(variant.name):
        role = ROLES.get(entry.folder, "tokenizer")
        roles.setdefault(role, []).append(entry)
    roles["dit"] = sorted(roles.get("dit", []), key=lambda e: "low_noise" in e.filename)
    return roles


def locate(entry: Entry, folders: ModelFolders) -> Path | None:
    """Where an entry's file is installed, searching the folder's legacy names and extra_model_paths.yaml too."""
    for directory in folders.search_dirs(entry.folder):
        candidate = directory / entry.filename
        if candidate.is_file():
            return candidate
    return None


def find_wan_files(variant: WanVariant, models: str | os.PathLike | ModelFolders,
                   manifest: Manifest | None = None) -> WanFiles:
    """The files of `variant`'s manifest bundle in a models folder (a path, or a ComfyUI install's folders)."""
    manifest = manifest or load_manifest()
    folders = models if isinstance(models, ModelFolders) else model_folders(models_dir=Path(models))
    found: dict[str, list[Path]] = {}
    missing = []
    for role, entries in bundle_roles(variant, manifest).items():
        for entry in entries:
            path = locate(entry, folders)
            if path is None:
                missing.append(f"{entry.folder}/{entry.filename}")
            else:
                found.setdefault(role, []).append(path)
    if missing:
        raise CheckpointError(
            f"{variant.title} needs files that are not in {folders.models_dir}: {', '.join(missing)}. Install them with "
            f"`python install.py --models {variant.name} --comfyui <ComfyUI folder>`, pass the right folder with "
            "--models-dir, or try the pipeline without downloads using --demo."
        )
    tokenizer = found.get("tokenizer", [None])[0]
    return WanFiles(
        dit=tuple(found["dit"]), vae=found["vae"][0], text_encoder=found["text_encoder"][0],
        tokenizer=tokenizer.parent if tokenizer is not None else None,
        clip_vision=found.get("clip_vision", [None])[0],
    )
