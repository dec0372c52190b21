"""Checking a model file against its manifest entry: size, sha256 (when known) and the safetensors header."""

from __future__ import annotations

import hashlib
from pathlib import Path

from videosdgx.manifest import Entry
from videosdgx.runtime.checkpoint import read_safetensors_header
from videosdgx.runtime.errors import CheckpointError

HASH_CHUNK = 16 * 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, entry: Entry, check_hash: bool = True) -> None:
    """Raise CheckpointError unless `path` is a complete, intact copy of `entry`.

    The size must match when the manifest knows it exactly, a .safetensors file must have a header that fits in
    the file, and the sha256 must match when the manifest has one (skipped with check_hash=False, for quick
    "is it installed" checks).
    """
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist.")
    size = path.stat().st_size
    if entry.size_verified and size != entry.size:
        raise CheckpointError(
            f"{path} is {size:,} bytes but {entry.id} is {entry.size:,} bytes: it is incomplete or a different file."
        )
    if size == 0:
        raise CheckpointError(f"{path} is empty.")
    if entry.is_safetensors:
        read_safetensors_header(path)
    if check_hash and entry.sha256:
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise CheckpointError(
                f"{path} has sha256 {actual}, expected {entry.sha256} for {entry.id}: the file is corrupt or a "
                "different version."
            )
