"""Folder entries on disk: the record of the files the installer resolved from the Hub listing, the per-file
entries they are downloaded and checked as, and the path a pipeline loads (the shard index, else the weight file).

The record, `<folder>/.videosdgx-files.json`, names every file with its size (and sha256 for LFS files), so that
`--verify`, `--list` and the pipelines' role lookup work without the network. A folder without it is not installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from videosdgx.install.verify import verify_file
from videosdgx.manifest import Entry
from videosdgx.runtime.errors import CheckpointError

RECORD_NAME = ".videosdgx-files.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".gguf")


@dataclass(frozen=True)
class FolderFile:
    """One file of a folder entry: its name in the folder, exact size, sha256 when the Hub lists one (LFS)."""

    name: str
    size: int
    sha256: str | None = None


def file_entry(entry: Entry, file: FolderFile) -> Entry:
    """The single-file entry one file of a folder entry is downloaded and verified as."""
    return dataclasses.replace(
        entry, id=f"{entry.id}:{file.name}", path=f"{entry.path}/{file.name}".lstrip("/"),
        filename=f"{entry.filename}/{file.name}", size=file.size, size_verified=True, sha256=file.sha256,
        weights=(), files=(), notes="",
    )


def write_record(folder: Path, entry: Entry, files: list[FolderFile]) -> None:
    """Record the files of `entry` installed in `folder` (written last, atomically: its presence means complete)."""
    record = {"entry": entry.id, "repo": entry.repo, "path": entry.path, "revision": entry.revision,
              "files": [dataclasses.asdict(f) for f in files]}
    temporary = folder / (RECORD_NAME + ".tmp")
    temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(temporary, folder / RECORD_NAME)


def read_record(folder: Path, entry: Entry | None = None) -> list[FolderFile] | None:
    """The recorded files in `folder` (of `entry`'s repo folder when given); None without a readable record."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
        if entry is not None and (record["repo"], record["path"]) != (entry.repo, entry.path):
            return None
        files = [FolderFile(str(f["name"]), int(f["size"]), f.get("sha256")) for f in record["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not files or any("/" in f.name or "\\" in f.name or f.name in ("", ".", "..") for f in files):
        return None
    return files


def load_path(folder: Path, files: list[FolderFile]) -> Path:
    """What a loader reads from an installed folder: its shard index when it has one, else its weight file, else
    (several weight files without an index) the folder itself, whose loader reads them all."""
    names = sorted(f.name for f in files)
    index = [n for n in names if n.endswith(".index.json")]
    weights = [n for n in names if n.endswith(WEIGHT_SUFFIXES)]
    return folder / index[0] if index else folder / weights[0] if len(weights) == 1 else folder


def installed_folders(root: Path) -> list[str]:
    """The installed folder entries under a model folder, as paths relative to it (what a loader node offers)."""
    return sorted(str(r.parent.relative_to(root)).replace(os.sep, "/") for r in root.rglob(RECORD_NAME)
                  if r.parent != root)


def folder_load_path(folder: Path, entry: Entry | None = None) -> Path | None:
    """`load_path` of an installed folder (of `entry`'s repo folder when given); None unless `folder` holds a
    complete install record."""
    files = read_record(folder, entry)
    if files is None or not all((folder / f.name).is_file() for f in files):
        return None
    return load_path(folder, files)


def verify_installed(path: Path, entry: Entry, check_hash: bool = True) -> None:
    """Raise CheckpointError unless `path` is a complete copy of `entry`: the file, or every recorded file of the
    folder (size, header, and the sha256 when known unless check_hash is False)."""
    if not entry.is_folder:
        verify_file(path, entry, check_hash)
        return
    files = read_record(path, entry)
    if files is None:
        raise CheckpointError(f"{path} holds no record of the files of {entry.id} ({RECORD_NAME}): install.py did "
                              "not finish installing it there.")
    for file in files:
        verify_file(path / file.name, file_entry(entry, file), check_hash)
