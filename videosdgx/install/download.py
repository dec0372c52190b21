"""Downloading manifest entries: hf_hub_download into a staging folder on the destination's filesystem, verify,
then an atomic rename into place. A file that fails verification is deleted and never reaches a model folder.

huggingface_hub does the HTTP work: HF_TOKEN (or `hf auth login`) for gated repos, HF_ENDPOINT for mirrors (read
here at call time, since huggingface_hub reads it once at import), progress bars, and resuming a transfer that
drops mid-file with a Range request.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)

from videosdgx.manifest import Entry, Manifest
from videosdgx.runtime.errors import CheckpointError
from videosdgx.install.comfyui import ModelFolders
from videosdgx.install.errors import InstallError
from videosdgx.install.plan import Plan, check_disk, format_size
from videosdgx.install.verify import verify_file

log = logging.getLogger(__name__)

STAGING_NAME = ".videosdgx-staging"


def install(plan: Plan, manifest: Manifest, folders: ModelFolders) -> list[Path]:
    """Download every missing file of `plan` after checking disk space; returns the installed paths.

    Files that fail do not stop the others; one InstallError at the end lists every failure.
    """
    check_disk(plan)
    installed, failures = [], []
    for f in plan.missing:
        entry = f.entry
        log.info("Downloading %s (%s) from %s to %s", entry.id, format_size(entry.size, entry.size_verified),
                 entry.repo, f.destination)
        alternatives = [manifest.entry(a) for a in entry.alternatives]
        try:
            installed.append(download_entry(entry, f.destination, folders.target(entry.folder), alternatives))
        except InstallError as exc:
            log.error("%s", exc)
            failures.append(str(exc))
    if failures:
        raise InstallError(f"{len(failures)} of {len(plan.missing)} files were not installed:\n  - " +
                           "\n  - ".join(failures))
    return installed


def download_entry(entry: Entry, destination: Path, folder_root: Path, alternatives: list[Entry] = ()) -> Path:
    """Download, verify and move one file to `destination` (inside `folder_root`, its ComfyUI model folder)."""
    staging = staging_dir(folder_root, entry.id)
    try:
        staged = _fetch(entry, staging, alternatives)
        try:
            verify_file(staged, entry)
        except CheckpointError as exc:
            staged.unlink(missing_ok=True)
            raise InstallError(f"{exc} The bad download was deleted and nothing was installed at {destination}; "
                               "run the same command again to retry.") from None
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.parent.rmdir()
        except OSError:
            pass  # other downloads are still using it
    log.info("Installed %s", destination)
    return destination


def staging_dir(folder_root: Path, entry_id: str) -> Path:
    """A new folder on the same filesystem as `folder_root`: next to it if possible (ComfyUI lists everything
    inside a model folder, finished or not), else inside it."""
    folder_root.mkdir(parents=True, exist_ok=True)
    device = folder_root.stat().st_dev
    for root in (folder_root.parent / STAGING_NAME, folder_root / STAGING_NAME):
        try:
            root.mkdir(exist_ok=True)
        except OSError:
            continue
        if root.stat().st_dev == device:
            return Path(tempfile.mkdtemp(prefix=f"{entry_id}.", dir=root))
    raise InstallError(f"Cannot create a staging folder next to or inside {folder_root}: check its permissions.")


def _fetch(entry: Entry, staging: Path, alternatives: list[Entry]) -> Path:
    try:
        path = hf_hub_download(
            entry.repo,
            entry.path,
            revision=entry.revision,
            local_dir=staging,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except RemoteEntryNotFoundError:
        raise InstallError(f"{entry.path} is not in {entry.repo}@{entry.revision}: the manifest entry {entry.id} "
                           "is out of date. Please report it.") from None
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise InstallError(access_message(entry, exc.response.status_code, alternatives)) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise InstallError(access_message(entry, status, alternatives)) from None
        raise InstallError(f"Downloading {entry.id} from {entry.repo} failed: {exc}") from None
    except (LocalEntryNotFoundError, OSError) as exc:
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        raise InstallError(f"Could not download {entry.id} from {endpoint} ({exc}). Check the network connection "
                           "and run the same command again.") from None
    return Path(path)


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
