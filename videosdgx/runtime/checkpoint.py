"""Opening model files: safetensors (single or sharded) and restricted torch pickles, validated before use.

A `Checkpoint` exposes tensor names, dtypes and shapes without reading any weight, and reads one tensor at a time
from a memory map. Once a tensor is copied out, `release` drops its pages from this process and from the OS page
cache, so that a loaded file is not held twice (on unified-memory machines the page cache and the GPU weights share
one pool). Every problem with a file (missing, truncated, corrupt header, a pickle that needs code
execution) becomes a `CheckpointError` that names the file and says how to fix it.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import mmap
import os
import pickle
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch

from videosdgx.runtime.errors import CheckpointError

log = logging.getLogger(__name__)

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Page-cache folios can be large (2 MiB and more) and are dropped only whole; a folio that straddles two tensors
# goes when the second is released, because in-order releases reach back to this alignment (into bytes already read).
RELEASE_ALIGN = 64 * 1024 * 1024
REDOWNLOAD_HINT = ("Delete it and download it again: `python install.py --verify` names the bundle it belongs to, "
                   "`python install.py --models BUNDLE` fetches it.")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it is, read from a file header."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    offset: int  # absolute byte offset in `file` (safetensors only; -1 for pickles)
    nbytes: int


def _format_size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def model_file_size(path: Path) -> int:
    """The size of `path` if it is a regular file; a CheckpointError saying what it is instead otherwise.

    Never opens the file, so a FIFO or device named like a model file cannot block the caller.
    """
    try:
        status = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise CheckpointError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist. Point "
                                  "the link at the model file, or replace it with the file.") from None
        raise CheckpointError(f"Model file not found: {path}. Check the path, or install it with install.py.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(f"{path} is a symbolic link loop (it ends up pointing at itself). Replace the "
                                  "link with the model file or a link to it.") from None
        raise CheckpointError(f"Cannot read {path}: {exc.strerror or exc}. Check the path and its permissions.") \
            from None
    if stat.S_ISDIR(status.st_mode):
        raise CheckpointError(f"{path} is a folder, not a model file. Give the .safetensors file(s) in it, or the "
                              "folder itself where a folder is accepted.")
    if not stat.S_ISREG(status.st_mode):
        raise CheckpointError(f"{path} is not a regular file (it is a FIFO, socket or device), so it cannot be a "
                              "model file. Give the path of the downloaded model file.")
    return status.st_size


def _open_model_file(path: Path):
    try:
        return path.open("rb")
    except OSError as exc:
        raise CheckpointError(f"Cannot read {path}: {exc.strerror or exc}. Give this user read permission "
                              f"(for example `chmod a+r {path}`).") from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    pass


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, int]:
    """Parse and validate a safetensors header. Returns (header dict, byte offset where tensor data starts).

    Detects zero-byte, truncated and corrupt files, and headers whose entries are malformed, overlap, point past
    the end of the file or disagree with their dtype and shape, before anything is loaded.
    """
    path = Path(path)
    size = model_file_size(path)
    if size < 8:
        raise CheckpointError(f"{path} is {size} bytes: the file is empty or cut off. {REDOWNLOAD_HINT}")
    with _open_model_file(path) as f:
        start = f.read(9)
        (header_len,) = struct.unpack("<Q", start[:8])
        if start[:4] == b"PK\x03\x04":
            raise CheckpointError(f"{path} is a zip archive, not a safetensors file: a PyTorch checkpoint saved with "
                                  "torch.save has this form. Give it a .pth name if it is one.")
        if header_len > MAX_HEADER_BYTES or header_len == 0 or start[8:9] not in (b"{", b""):
            raise CheckpointError(
                f"{path} is not a safetensors file (no JSON header where one belongs, header length field "
                f"{header_len}). "
                f"If it is a PyTorch pickle, give it a .pth/.pt name; otherwise {REDOWNLOAD_HINT}"
            )
        if 8 + header_len > size:
            raise CheckpointError(
                f"{path} is truncated: its header alone needs {_format_size(8 + header_len)} but the file has "
                f"{_format_size(size)}. {REDOWNLOAD_HINT}"
            )
        f.seek(8)
        raw = f.read(header_len)
    try:
        header = json.loads(raw, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise CheckpointError(f"{path} has a corrupt safetensors header: it lists '{exc}' twice. "
                              f"{REDOWNLOAD_HINT}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has a corrupt safetensors header ({exc}). {REDOWNLOAD_HINT}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt safetensors header (not a JSON object). {REDOWNLOAD_HINT}")
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{path} has a corrupt safetensors header: __metadata__ must map names to strings. "
                              f"{REDOWNLOAD_HINT}")
    data_start = 8 + header_len
    spans = sorted((_checked_span(path, name, entry), name) for name, entry in header.items() if name != "__metadata__")
    expected = data_start + max((span[1] for span, _ in spans), default=0)
    if size < expected:
        raise CheckpointError(
            f"{path} is truncated: expected {expected:,} bytes ({_format_size(expected)}), found {size:,} bytes "
            f"({_format_size(size)}). {REDOWNLOAD_HINT}"
        )
    for (previous, first), (span, second) in zip(spans, spans[1:]):
        if span[0] < previous[1] and span[1] > span[0]:
            raise CheckpointError(f"{path}: tensors '{first}' and '{second}' overlap in the file (bytes "
                                  f"{previous[0]}-{previous[1]} and {span[0]}-{span[1]}). The file is corrupt. "
                                  f"{REDOWNLOAD_HINT}")
    return header, data_start


def _checked_span(path: Path, name: str, entry: object) -> tuple[int, int]:
    """(begin, end) of one header entry after checking its dtype, shape and offsets agree."""

    def corrupt(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: the header entry of tensor '{name}' {problem}. The file is corrupt or "
                               f"not a safetensors file. {REDOWNLOAD_HINT}")

    if not isinstance(entry, dict):
        raise corrupt(f"is {type(entry).__name__} {entry!r:.80}, not an object with dtype, shape and data_offsets")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise corrupt(f"has dtype {dtype!r}, which VideosDGX does not read (known: {', '.join(SAFETENSORS_DTYPES)})")
    if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
        raise corrupt(f"has shape {shape!r:.80}, not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise corrupt(f"has data_offsets {offsets!r:.80}, not [begin, end] with non-negative integers")
    begin, end = offsets
    needed = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
    if end - begin != needed:
        raise CheckpointError(
            f"{path}: tensor '{name}' claims {end - begin} bytes but {dtype}{shape} needs {needed}. The file is "
            f"corrupt. {REDOWNLOAD_HINT}"
        )
    return begin, end


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _safetensors_infos(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    header, data_start = read_safetensors_header(path)
    metadata = header.pop("__metadata__", None) or {}
    infos = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        infos[name] = TensorInfo(dtype, tuple(entry["shape"]), path, data_start + begin, end - begin)
    return infos, metadata


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    """Load a .pth/.pt state dict with torch's restricted weights-only unpickler (never executes code)."""
    with _open_model_file(path) as f:
        start = f.read(9)
    if len(start) == 9 and start[8:9] == b"{" and 0 < struct.unpack("<Q", start[:8])[0] <= MAX_HEADER_BYTES:
        raise CheckpointError(f"{path} is a safetensors file with a {path.suffix} name: rename it to "
                              f"{path.with_suffix('.safetensors').name}.")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) files cannot be mmapped
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Refused to load {path}: it is a pickle that needs more than plain tensors to load ({first_line}). "
            "VideosDGX never executes code from model files. Use the official or a .safetensors release of this "
            "model."
        ) from None
    except (EOFError, OSError, RuntimeError, ValueError, struct.error) as exc:
        raise CheckpointError(f"{path} is truncated or not a PyTorch file ({exc}). {REDOWNLOAD_HINT}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors, so it is not a model state dict.")
    return obj


class Checkpoint:
    """Read-only view of one model's tensors across one or more files."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.metadata: dict[str, str] = {}
        self._infos: dict[str, TensorInfo] = {}
        self._pickled: dict[str, torch.Tensor] = {}
        for file in files:
            if file.suffix in (".pth", ".pt", ".ckpt", ".bin"):
                tensors = _load_pickle(file)
                self._pickled.update(tensors)
                infos = {name: TensorInfo(t.dtype, tuple(t.shape), file, -1, t.numel() * t.element_size())
                         for name, t in tensors.items()}
            else:
                infos, metadata = _safetensors_infos(file)
                self.metadata.update(metadata)
            twice = [name for name in infos if name in self._infos]
            if twice:
                raise CheckpointError(
                    f"Tensor '{twice[0]}' is stored both in {self._infos[twice[0]].file} and in {file}"
                    f"{f' (and {len(twice) - 1} more)' if len(twice) > 1 else ''}: these files are not shards of "
                    "one model. Give the shards of one model only (or its .safetensors.index.json).")
            self._infos.update(infos)
        self._maps: dict[Path, tuple[mmap.mmap, int]] = {}
        self._released_to: dict[Path, int] = {}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], source: Path) -> "Checkpoint":
        """An in-memory checkpoint (e.g. after a layout conversion that fuses or splits tensors)."""
        checkpoint = cls([])
        checkpoint.files = [source]
        checkpoint._pickled = dict(tensors)
        checkpoint._infos = {k: TensorInfo(t.dtype, tuple(t.shape), source, -1, t.numel() * t.element_size())
                             for k, t in tensors.items()}
        return checkpoint

    @property
    def name(self) -> str:
        return self.files[0].name if len(self.files) == 1 else f"{self.files[0].parent.name} ({len(self.files)} files)"

    def keys(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, key: str) -> bool:
        return key in self._infos

    def __len__(self) -> int:
        return len(self._infos)

    def info(self, key: str) -> TensorInfo:
        return self._infos[key]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: v.shape for k, v in self._infos.items()}

    def dtypes(self) -> dict[str, torch.dtype]:
        return {k: v.dtype for k, v in self._infos.items()}

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._infos.values())

    def get(self, key: str) -> torch.Tensor:
        """The stored tensor, backed by the memory-mapped file (no copy). Call `release` after copying it."""
        info = self._infos[key]
        if info.offset < 0:
            return self._pickled[key]
        mm = self._map(info.file)
        if info.nbytes == 0:
            return torch.empty(info.shape, dtype=info.dtype)
        flat = torch.frombuffer(mm, dtype=torch.uint8, count=info.nbytes, offset=info.offset)
        return flat.view(info.dtype).view(info.shape)

    def release(self, key: str) -> None:
        """Drop the pages of `key` from this process (madvise) and then from the OS page cache (posix_fadvise).

        Tensors released in file order also drop what is left behind them (read-ahead, pages mapped around a
        fault, page-cache folios shared with the previous tensor). Both calls are advisory and need no privileges;
        the page cache keeps pages that another process maps.
        """
        info = self._infos[key]
        if info.offset < 0 or info.file not in self._maps:
            return
        mm, fd = self._maps[info.file]
        page = mmap.PAGESIZE
        start = info.offset // page * page
        released = self._released_to.get(info.file, 0)
        if released <= info.offset:  # read in file order: also drop what is left behind the previous release
            start = released // RELEASE_ALIGN * RELEASE_ALIGN
        end = min(-(-(info.offset + info.nbytes) // page) * page, mm.size())
        self._released_to[info.file] = max(released, info.offset + info.nbytes)
        if end <= start:
            return
        if hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED, start, end - start)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for key in self._infos:
            yield key, self.get(key)

    def _map(self, file: Path) -> mmap.mmap:
        if file not in self._maps:
            fd = os.open(file, os.O_RDONLY)
            self._maps[file] = (mmap.mmap(fd, 0, access=mmap.ACCESS_COPY), fd)
        return self._maps[file][0]

    def close(self) -> None:
        """Forget the maps and drop what is left of the files in the page cache.

        What is left: the headers, read-ahead, pages the kernel mapped around a fault after their tensor was
        released, and large page-cache folios that straddle two tensors (a folio is dropped only whole).
        """
        for mm, fd in self._maps.values():
            if hasattr(mmap, "MADV_DONTNEED") and mm.size():
                mm.madvise(mmap.MADV_DONTNEED)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        self._maps.clear()
        self._released_to.clear()
        self._pickled.clear()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_checkpoint_files(path: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Turn a file, a shard index, a folder or a list of files into the list of files to read.

    Every file returned is an existing regular file (checked without opening it).
    """
    if not isinstance(path, (str, os.PathLike)):
        files = [Path(p) for p in path]
        if not files:
            raise CheckpointError("No model files were given.")
        return [f for p in files for f in resolve_checkpoint_files(p)]
    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        if indexes:
            return resolve_checkpoint_files(indexes[0])
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{path} is a folder with no .safetensors files in it.")
        for file in files:
            model_file_size(file)
        return files
    if path.name.endswith(".index.json"):
        return _index_shards(path)
    model_file_size(path)
    return [path]


def _index_shards(path: Path) -> list[Path]:
    """The shard files a `.safetensors.index.json` names, all present in its folder."""
    model_file_size(path)
    try:
        index = json.loads(path.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"Cannot read the shard index {path}: {exc.strerror or exc}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid shard index ({exc}). {REDOWNLOAD_HINT}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path} is not a valid shard index: it needs a non-empty \"weight_map\" object "
                              f"mapping tensor names to shard file names. {REDOWNLOAD_HINT}")
    names = set(weight_map.values())
    bad = sorted(repr(n) for n in names if not isinstance(n, str) or not n or n in (".", "..") or "/" in n
                 or "\\" in n)
    if bad:
        raise CheckpointError(f"{path} is not a valid shard index: {', '.join(bad[:3])} is not the name of a file "
                              f"next to the index. {REDOWNLOAD_HINT}")
    shards = [path.parent / name for name in sorted(names)]
    missing = [s.name for s in shards if not s.exists() and not s.is_symlink()]
    if missing:
        raise CheckpointError(
            f"{path.name} lists shards that are not in {path.parent}: {', '.join(missing)}. Download every "
            "shard of the model (install.py does) before loading it."
        )
    for shard in shards:
        model_file_size(shard)
    return shards


def open_checkpoint(path: str | os.PathLike | Iterable[str | os.PathLike]) -> Checkpoint:
    """Open a model from a file, a folder, a `.safetensors.index.json` or a list of shards."""
    return Checkpoint(resolve_checkpoint_files(path))
