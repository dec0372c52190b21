"""Downloading manifest entries into a staging folder on the destination's filesystem, verify, then an atomic
rename into place. A file that fails verification is deleted and never reaches a model folder.

Each entry has one staging folder, `<model folder>/../.videosdgx-staging/<entry id>/`, holding the bytes received so
far (`<name>.part`) and where they came from (`source.json`: repo, path, revision, ETag, size). A later run, even
after Ctrl-C, a kill -9 or a full disk, checks that record against the Hub and continues from the staged bytes with
an HTTP Range request; staged bytes of another version of the file are dropped. The finished file is verified (size,
header, sha256) before it is moved into place.

huggingface_hub does the HTTP work: HF_TOKEN (or `hf auth login`) for gated repos, HF_ENDPOINT for mirrors (read
here at call time, since huggingface_hub reads it once at import), progress bars, and resuming a transfer that
drops mid-file. An entry with a `download_url` (a pinned GitHub raw URL) is fetched from there the same way, without
the Hub token; a folder entry is listed on the Hub first (hub_folder.py), then each of its files is fetched here.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from huggingface_hub import HfFileMetadata, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from videosdgx.install.comfyui import ModelFolders
from videosdgx.install.errors import DownloadInterrupted, InstallError
from videosdgx.install.plan import Plan, check_disk, entry_size, format_size
from videosdgx.install.verify import verify_file
from videosdgx.manifest import Entry, Manifest
from videosdgx.runtime.errors import CheckpointError

log = logging.getLogger(__name__)

STAGING_NAME = ".videosdgx-staging"
SOURCE_RECORD = "source.json"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _network_errors() -> tuple[type[BaseException], ...]:
    """The transport errors of the HTTP client huggingface_hub uses (httpx2, httpx or requests by version)."""
    kinds: list[type[BaseException]] = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        try:
            kinds.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(kinds)


NETWORK_ERRORS = _network_errors()


def install(plan: Plan, manifest: Manifest, folders: ModelFolders) -> list[Path]:
    """Download every missing file of `plan` after checking disk space; returns the installed paths.

    Files that fail do not stop the others; one InstallError at the end lists every failure. Ctrl-C stops at once
    with a DownloadInterrupted that says what is staged.
    """
    check_disk(plan)
    installed, failures = [], []
    for f in plan.missing:
        entry = f.entry
        log.info("Downloading %s (%s) from %s to %s", entry.id, entry_size(entry), entry.url, f.destination)
        alternatives = [manifest.entry(a) for a in entry.alternatives]
        fetch = download_entry
        if entry.is_folder:
            from videosdgx.install.hub_folder import download_folder as fetch
        try:
            installed.append(fetch(entry, f.destination, folders.target(entry.folder), alternatives))
        except DownloadInterrupted:
            raise
        except InstallError as exc:
            log.error("%s", exc)
            failures.append(str(exc))
    if failures:
        raise InstallError(f"{len(failures)} of {len(plan.missing)} files were not installed:\n  - " +
                           "\n  - ".join(failures))
    return installed


def download_entry(entry: Entry, destination: Path, folder_root: Path, alternatives: list[Entry] = ()) -> Path:
    """Download (or continue downloading), verify and move one file to `destination` (inside `folder_root`, its
    ComfyUI model folder)."""
    staging = staging_dir(folder_root, entry.id)
    part = staging / (re.sub(r"[^\w.-]", "_", Path(entry.filename).name) + ".part")
    try:
        _download_locked(entry, part, destination, alternatives)
    finally:
        _remove_if_empty(staging)
    log.info("Installed %s", destination)
    return destination


def _download_locked(entry: Entry, part: Path, destination: Path, alternatives: list[Entry]) -> None:
    staging = part.parent
    with _exclusive(staging, entry):
        try:
            _fetch(entry, part, alternatives)
        except KeyboardInterrupt:
            raise DownloadInterrupted(
                f"Interrupted while downloading {entry.id}: {_size(part):,} bytes are staged in {staging}. Run the "
                "same command again to continue from there.") from None
        try:
            verify_file(part, entry)
        except CheckpointError as exc:
            _discard(part)
            raise InstallError(f"{exc} The bad download was deleted and nothing was installed at {destination}; "
                               "run the same command again to retry.") from None
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, destination)
        except OSError as exc:
            raise InstallError(f"Could not move the verified download of {entry.id} from {part} to {destination}: "
                               f"{exc.strerror or exc}. Check that folder's permissions and run the same command "
                               "again (the download is kept).") from None
        _discard(part)


def staging_dir(folder_root: Path, entry_id: str) -> Path:
    """The staging folder of one entry, on the same filesystem as `folder_root`: next to it if possible (ComfyUI
    lists everything inside a model folder, finished or not), else inside it. The same on every run, so that a
    later run finds the bytes an earlier one staged."""
    try:
        folder_root.mkdir(parents=True, exist_ok=True)
        device = folder_root.stat().st_dev
    except OSError as exc:
        raise InstallError(f"Cannot create the model folder {folder_root}: {exc.strerror or exc}. Check its "
                           "permissions, or choose another folder (--models-dir, extra_model_paths.yaml).") from None
    name = re.sub(r"[^\w.-]", "_", entry_id)
    for root in (folder_root.parent / STAGING_NAME, folder_root / STAGING_NAME):
        try:
            root.mkdir(exist_ok=True)
            if root.stat().st_dev != device:
                continue
            (root / name).mkdir(exist_ok=True)
        except OSError:
            continue
        return root / name
    raise InstallError(f"Cannot create a staging folder next to or inside {folder_root}: check its permissions.")


@contextmanager
def _exclusive(staging: Path, entry: Entry) -> Iterator[None]:
    """Hold the staging folder's lock, so that two installers never write one file."""
    with (staging / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InstallError(f"Another installer is downloading {entry.id} into {staging} right now. Wait for it "
                               "to finish, then run this command again.") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fetch(entry: Entry, part: Path, alternatives: list[Entry]) -> None:
    """Bring `part` to the complete file, continuing from the bytes already staged when they are of this version."""
    with hub_errors(entry, alternatives, part):
        if entry.download_url:
            remote, headers = url_metadata(entry.download_url), {}  # the Hub token is never sent elsewhere
        else:
            endpoint = os.environ.get("HF_ENDPOINT") or None
            url = hf_hub_url(entry.repo, entry.path, revision=entry.revision, endpoint=endpoint)
            remote, headers = get_hf_file_metadata(url), build_hf_headers()
        source = {"repo": entry.repo, "path": entry.path, "revision": entry.revision, "etag": remote.etag,
                  "size": remote.size, **({"url": entry.download_url} if entry.download_url else {})}
        staged = _staged_bytes(part, source)
        if remote.size is not None and staged == remote.size:
            return
        if staged:
            log.info("Continuing %s from the %s already staged", entry.id, format_size(staged))
        with part.open("ab") as sink:
            http_get(remote.location, sink, resume_size=staged, headers=headers, expected_size=remote.size,
                     displayed_filename=Path(entry.filename).name)


def url_metadata(url: str) -> HfFileMetadata:
    """ETag, size and final location of a file outside the Hub (HEAD, redirects followed, no credentials)."""
    response = get_session().head(url, headers={"Accept-Encoding": "identity"}, follow_redirects=True)
    hf_raise_for_status(response)
    size = response.headers.get("Content-Length")
    return HfFileMetadata(commit_hash=None, etag=response.headers.get("ETag"), location=str(response.url),
                          size=int(size) if size and size.isdigit() else None, xet_file_data=None)


@contextmanager
def hub_errors(entry: Entry, alternatives: list[Entry], part: Path | None = None) -> Iterator[None]:
    """Turn the Hub's, the network's and the disk's errors while fetching `entry` into InstallErrors saying what to
    do (`part`: the staged file being written, if any)."""
    try:
        yield
    except RemoteEntryNotFoundError:
        raise InstallError(f"{entry.path} is not in {entry.repo}@{entry.revision}: the manifest entry {entry.id} "
                           "is out of date. Please report it.") from None
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise InstallError(access_message(entry, exc.response.status_code, alternatives)) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if entry.download_url:
            raise InstallError(f"{entry.download_url} answered HTTP {status} for {entry.id}: the manifest entry is "
                               "out of date or the server is down. Please report it if it persists.") from None
        if status in (401, 403):
            raise InstallError(access_message(entry, status, alternatives)) from None
        raise InstallError(f"Downloading {entry.id} from {entry.repo} failed: {exc}") from None
    except OSError as exc:
        if part is not None and exc.errno in DISK_FULL:
            raise InstallError(
                f"Disk full while downloading {entry.id} into {part.parent} ({_size(part):,} bytes staged). Free "
                "space on that disk (or point the folder elsewhere with --models-dir or extra_model_paths.yaml) and "
                "run the same command again: it continues from the staged bytes.") from None
        if part is not None and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise InstallError(f"Cannot write {part}: {exc.strerror}. Check the folder's permissions, or choose "
                               "another folder with --models-dir.") from None
        raise _network_failure(entry, part, exc) from None
    except NETWORK_ERRORS as exc:
        raise _network_failure(entry, part, exc) from None


def _network_failure(entry: Entry, part: Path | None, exc: BaseException) -> InstallError:
    endpoint = entry.download_url or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    staged = _size(part) if part is not None else 0
    staged = f" {staged:,} bytes are staged and the next run continues from there." if staged else ""
    return InstallError(f"Could not download {entry.id} from {endpoint} ({str(exc) or type(exc).__name__}). Check "
                        f"the network connection and run the same command again.{staged}")


def _staged_bytes(part: Path, source: dict) -> int:
    """How many staged bytes can be continued from: 0 (and nothing staged) unless they are of this very file."""
    record = part.parent / SOURCE_RECORD
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    staged = _size(part)
    usable = recorded == source and source["etag"] and (source["size"] is None or staged <= source["size"])
    if staged and not usable:
        log.info("Dropping %s staged bytes at %s: they are not of %s@%s as it is now", f"{staged:,}", part,
                 source["path"], source["revision"])
    if not usable:
        part.unlink(missing_ok=True)
        record.write_text(json.dumps(source), encoding="utf-8")
        return 0
    return staged


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    (part.parent / SOURCE_RECORD).unlink(missing_ok=True)


def _remove_if_empty(staging: Path) -> None:
    """Remove an entry's staging folder unless it holds staged bytes, and the staging root once it is empty."""
    if any(p.suffix == ".part" and _size(p) for p in staging.iterdir()):
        return
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()
    except OSError:
        pass  # other downloads are still using it


def access_message(entry: Entry, status: int | None, alternatives: list[Entry]) -> str:
    """What to do when the Hub refuses a download (401/403/404 on the repo)."""
    message = f"Hugging Face refused {entry.repo} (HTTP {status})."
    if entry.gated:
        message += (f" It is a gated repository: accept its licence at https://huggingface.co/{entry.repo} while "
                    "logged in, then set HF_TOKEN (or run `hf auth login`) and try again.")
    else:
        message += " Check HF_TOKEN; the repository may have been made private, gated or renamed."
    if alternatives:
        names = ", ".join(f"{a.id} ({a.repo}/{a.path}, {a.folder}/{a.filename})" for a in alternatives)
        message += f" Non-gated alternative{'s' if len(alternatives) > 1 else ''} with the same weights: {names}."
    return message
