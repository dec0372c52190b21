"""Installing a folder entry: list the repo folder on the Hub, choose its files by the entry's patterns, fetch each
one as a single-file download (staged, resumable, verified against the listing's size and LFS sha256), then record
what was installed (folders.py).

The weight patterns are alternatives in order of preference: the first that matches any file decides the weights. A
matching shard index (`*.index.json`) is fetched first and brings every shard it names, each of which must be in
the listing.
"""

from __future__ import annotations

import json
import logging
import os
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from huggingface_hub import HfApi
from huggingface_hub.errors import RemoteEntryNotFoundError
from huggingface_hub.hf_api import RepoFile

from videosdgx.install.download import download_entry, hub_errors
from videosdgx.install.errors import InstallError
from videosdgx.install.folders import FolderFile, file_entry, write_record
from videosdgx.install.plan import free_bytes, format_size
from videosdgx.install.verify import verify_file
from videosdgx.manifest import Entry
from videosdgx.runtime.errors import CheckpointError

log = logging.getLogger(__name__)


def download_folder(entry: Entry, destination: Path, folder_root: Path, alternatives: list[Entry] = ()) -> Path:
    """Install every file of the folder entry `entry` into the folder `destination`; returns it."""
    listing = list_folder(entry, alternatives)
    chosen = choose_files(entry, listing)
    index = next((f for f in chosen if f.name.endswith(".index.json")), None)
    if index is not None:
        _fetch_file(entry, index, destination, folder_root, alternatives)
        chosen = _with_shards(entry, chosen, listing, destination / index.name)
    _check_space(entry, [f for f in chosen if not _present(entry, f, destination)], destination)
    for file in chosen:
        _fetch_file(entry, file, destination, folder_root, alternatives)
    write_record(destination, entry, chosen)
    log.info("Installed %s: %d files, %s, in %s", entry.id, len(chosen), format_size(sum(f.size for f in chosen)),
             destination)
    return destination


def list_folder(entry: Entry, alternatives: list[Entry] = ()) -> dict[str, FolderFile]:
    """The files directly in the entry's repo folder, by name, with size and (LFS files) sha256."""
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    with hub_errors(entry, alternatives):
        try:
            items = list(api.list_repo_tree(entry.repo, path_in_repo=entry.path or None, revision=entry.revision))
        except RemoteEntryNotFoundError:
            raise InstallError(f"{_where(entry)} does not exist, so manifest entry {entry.id} cannot be installed: the "
                               "manifest is out of date (the folder moved or was renamed). Please report it.") from None
    files = {PurePosixPath(item.path).name: FolderFile(PurePosixPath(item.path).name, item.size,
                                                       item.lfs.sha256 if item.lfs else None)
             for item in items if isinstance(item, RepoFile)}
    if not files:
        raise InstallError(f"{_where(entry)} holds no files, so manifest entry {entry.id} cannot be installed (the "
                           "weights may not be uploaded yet): check the repo page. Please report it.")
    return files


def choose_files(entry: Entry, listing: dict[str, FolderFile]) -> list[FolderFile]:
    """The listed files the entry's patterns select: every `files` pattern must match, and the first `weights`
    pattern that matches anything gives the weights."""
    names = sorted(listing)
    chosen: set[str] = set()
    for pattern in entry.files:
        found = [n for n in names if fnmatchcase(n, pattern)]
        if not found:
            raise InstallError(_no_match(entry, f"'{pattern}'", names))
        chosen.update(found)
    weights = next((found for p in entry.weights if (found := [n for n in names if fnmatchcase(n, p)])), None)
    if weights is None:
        raise InstallError(_no_match(entry, "any of " + ", ".join(f"'{p}'" for p in entry.weights), names))
    chosen.update(weights)
    return [listing[n] for n in sorted(chosen)]


def _with_shards(entry: Entry, chosen: list[FolderFile], listing: dict[str, FolderFile],
                 index: Path) -> list[FolderFile]:
    try:
        weight_map = json.loads(index.read_bytes())["weight_map"]
        shards = {str(name) for name in weight_map.values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise InstallError(f"{index.name} of {_where(entry)} is not a shard index (no \"weight_map\"): manifest entry "
                           f"{entry.id} cannot be installed. Please report it.") from None
    absent = sorted(shards - set(listing))
    if absent:
        raise InstallError(f"{index.name} of {_where(entry)} names shard(s) that are not in that folder: "
                           f"{', '.join(absent)}. The upload on the Hub is incomplete, so {entry.id} cannot be "
                           "installed; nothing but the index was downloaded. Try again later, or report it.")
    return sorted({*chosen, *(listing[name] for name in shards)}, key=lambda f: f.name)


def _fetch_file(entry: Entry, file: FolderFile, destination: Path, folder_root: Path,
                alternatives: list[Entry]) -> None:
    if not _present(entry, file, destination):
        download_entry(file_entry(entry, file), destination / file.name, folder_root, alternatives)


def _present(entry: Entry, file: FolderFile, destination: Path) -> bool:
    """A copy of `file` of the right size (and header) is already in place, from an earlier run."""
    try:
        verify_file(destination / file.name, file_entry(entry, file), check_hash=False)
        return True
    except CheckpointError:
        return False


def _check_space(entry: Entry, files: list[FolderFile], destination: Path) -> None:
    needed, free = sum(f.size for f in files), free_bytes(destination)
    if needed > free:
        raise InstallError(f"Not enough disk space for {entry.id}: its {len(files)} files still to download are "
                           f"{format_size(needed)} as listed on the Hub, only {format_size(free)} free at "
                           f"{destination}. Free some space or point the folder elsewhere (extra_model_paths.yaml "
                           "with is_default: true, or --models-dir).")


def _where(entry: Entry) -> str:
    return f"the folder '{entry.path or '/'}' of {entry.repo}@{entry.revision}"


def _no_match(entry: Entry, what: str, names: list[str]) -> str:
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return (f"No file in {_where(entry)} matches {what} (it holds {shown}), so manifest entry {entry.id} cannot be "
            "installed: the manifest is out of date. Please report it.")
