"""Planning an installation: which files of which bundles are missing, where they go, and whether they fit."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from videosdgx.manifest import Bundle, Entry, Manifest
from videosdgx.runtime.errors import CheckpointError
from videosdgx.install.comfyui import ModelFolders
from videosdgx.install.errors import InstallError
from videosdgx.install.folders import RECORD_NAME, verify_installed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedFile:
    entry: Entry
    destination: Path  # where a download goes
    installed: Path | None  # where a valid copy already is (any folder ComfyUI searches), None if missing

    @property
    def missing(self) -> bool:
        return self.installed is None


@dataclass(frozen=True)
class DiskSpace:
    """Bytes needed and free on one filesystem (`folder` is one of the destination folders on it)."""

    folder: Path
    needed: int
    free: int

    @property
    def enough(self) -> bool:
        return self.free >= self.needed


@dataclass(frozen=True)
class Plan:
    bundles: list[Bundle]
    files: list[PlannedFile]

    @property
    def missing(self) -> list[PlannedFile]:
        return [f for f in self.files if f.missing]

    def disk(self) -> list[DiskSpace]:
        """Space needed for the missing files, per filesystem (files of unknown size count as 0)."""
        needed: dict[int, int] = {}
        anchors: dict[int, Path] = {}
        for f in self.missing:
            anchor = existing_ancestor(f.destination.parent)
            device = anchor.stat().st_dev
            needed[device] = needed.get(device, 0) + (f.entry.size or 0)
            anchors.setdefault(device, f.destination.parent)
        return [DiskSpace(anchors[d], needed[d], free_bytes(anchors[d])) for d in needed]


def existing_ancestor(path: Path) -> Path:
    path = path.resolve()
    return next(p for p in (path, *path.parents) if p.exists())


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or would hold it, once created)."""
    return shutil.disk_usage(existing_ancestor(path)).free


def installed_candidates(entry: Entry, folders: ModelFolders) -> list[Path]:
    """Where a copy of `entry` is (its file, or for a folder entry a folder holding the installer's record), in
    ComfyUI's search order; not checked."""
    candidates = [folder / entry.filename for folder in folders.search_dirs(entry.folder)]
    if entry.is_folder:
        return [c for c in candidates if (c / RECORD_NAME).is_file()]
    return [c for c in candidates if c.is_file()]


def find_installed(entry: Entry, folders: ModelFolders) -> Path | None:
    """A valid copy of `entry` in any folder ComfyUI searches (size and header checked, not the hash)."""
    for candidate in installed_candidates(entry, folders):
        try:
            verify_installed(candidate, entry, check_hash=False)
            return candidate
        except CheckpointError as exc:
            log.warning("%s It will be downloaded again.", exc)
    return None


def plan_install(manifest: Manifest, bundle_names: list[str], folders: ModelFolders) -> Plan:
    """The files of the named bundles (each once), with their destinations and what is already installed."""
    bundles = [manifest.bundle(name) for name in bundle_names]
    for bundle in bundles:
        if bundle.status == "not_released":
            raise InstallError(f"{bundle.name}: {bundle.message}")
    entry_ids = list(dict.fromkeys(entry_id for b in bundles for entry_id in b.entries))
    files = []
    for entry_id in entry_ids:
        entry = manifest.entry(entry_id)
        destination = folders.target(entry.folder) / entry.filename
        files.append(PlannedFile(entry, destination, find_installed(entry, folders)))
    return Plan(bundles, files)


def check_disk(plan: Plan) -> None:
    """Raise InstallError naming every filesystem that cannot hold the missing files."""
    short = [d for d in plan.disk() if not d.enough]
    if short:
        lines = [f"{d.folder} needs {format_size(d.needed)}, only {format_size(d.free)} free" for d in short]
        raise InstallError(
            "Not enough disk space: " + "; ".join(lines) + ". Nothing was downloaded. Free some space or point the "
            "folder elsewhere (extra_model_paths.yaml with is_default: true, or --models-dir)."
        )


def entry_size(entry: Entry) -> str:
    """An entry's size for plans and logs; a folder entry's is known once the Hub lists it at install time."""
    size = format_size(entry.size, entry.size_verified)
    if entry.is_folder:
        return "known at install time" + (f" (estimate {size})" if entry.size is not None else "")
    return size


def format_size(size: int | None, exact: bool = True) -> str:
    if size is None:
        return "unknown size"
    text = f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size:,} bytes"
    return text if exact else "~" + text
