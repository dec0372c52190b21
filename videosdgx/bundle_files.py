"""A manifest bundle's files on disk, by role: what a pipeline loads, found where the installer puts them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from videosdgx.install.comfyui import ModelFolders
from videosdgx.install.folders import folder_load_path
from videosdgx.manifest import INSTALL_COMMAND, Entry, Manifest, load_manifest
from videosdgx.runtime.errors import CheckpointError, ConfigurationError


class MissingFilesError(CheckpointError):
    """Files of a bundle are not installed; the message names each one and the command that installs them."""

    def __init__(self, message: str, bundle: str, missing: tuple[str, ...]):
        super().__init__(message)
        self.bundle, self.missing = bundle, missing


@dataclass(frozen=True)
class BundleFiles:
    """Installed paths of one bundle by manifest role (`dit`, `dit_high`, `text_encoder`, `vae`, ...)."""

    bundle: str
    paths: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    def all(self, role: str) -> tuple[Path, ...]:
        return self.paths.get(role, ())

    def optional(self, role: str) -> Path | None:
        found = self.all(role)
        if len(found) > 1:
            raise ConfigurationError(f"Bundle {self.bundle} lists {len(found)} files of role '{role}', expected one.")
        return found[0] if found else None

    def one(self, role: str) -> Path:
        path = self.optional(role)
        if path is None:
            raise ConfigurationError(f"Bundle {self.bundle} has no file of role '{role}' in the manifest.")
        return path


def locate(entry: Entry, folders: ModelFolders) -> Path | None:
    """Where an entry's file is installed (its folder's download place, legacy names, extra_model_paths.yaml); for a
    folder entry, what its pipeline loads from the installed folder (the shard index, else the weight file)."""
    for directory in folders.search_dirs(entry.folder):
        candidate = directory / entry.filename
        found = folder_load_path(candidate, entry) if entry.is_folder else candidate if candidate.is_file() else None
        if found is not None:
            return found
    return None


def find_bundle_files(bundle: str, folders: ModelFolders, manifest: Manifest | None = None) -> BundleFiles:
    """Every file of `bundle`, by role; raises `MissingFilesError` naming all missing files and the install command."""
    manifest = manifest or load_manifest()
    found: dict[str, list[Path]] = {}
    missing = []
    for entry in manifest.bundle_entries(bundle):
        path = locate(entry, folders)
        if path is None:
            missing.append(f"{entry.folder}/{entry.filename}{'/' if entry.is_folder else ''}")
        else:
            found.setdefault(entry.role, []).append(path)
    if missing:
        gated = sorted({e.repo for e in manifest.bundle_entries(bundle) if e.gated and locate(e, folders) is None})
        licence = (f" Gated repos ({', '.join(gated)}): accept the licence on huggingface.co and set HF_TOKEN "
                   "(or run `hf auth login`) before installing." if gated else "")
        raise MissingFilesError(
            f"{bundle} needs {len(missing)} file(s) that are not in {folders.models_dir}: {', '.join(missing)}. "
            f"Install them with `{INSTALL_COMMAND} {bundle}` (add --models-dir {folders.models_dir} outside "
            f"ComfyUI), or add --download to `videosdgx generate`; --models-dir / --comfyui point at another "
            f"folder, --demo runs the pipeline on tiny random weights.{licence}",
            bundle, tuple(missing),
        )
    return BundleFiles(bundle, {role: tuple(paths) for role, paths in found.items()})
