"""How much of a file the OS page cache holds, measured with mincore(2) (no root needed).

A fresh shared read-only mapping of the file touches no page; mincore then reports, page by page, whether the
file's page is in the page cache. Linux gives that answer for files the caller owns or may write (since 5.2;
for other files it reports only the pages this process maps, i.e. none). Model files the user downloaded qualify.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import torch

_PROT_READ = 1
_MAP_SHARED = 1
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc


def resident_bytes(path: str | os.PathLike) -> int:
    """Bytes of `path` (whole pages, capped at its size) that are in the OS page cache now."""
    size = Path(path).stat().st_size
    if size == 0:
        return 0
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            pages = -(-size // mmap.PAGESIZE)
            vector = (ctypes.c_ubyte * pages)()
            if libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
            resident = int((torch.frombuffer(bytearray(vector), dtype=torch.uint8) & 1).sum())
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return min(resident * mmap.PAGESIZE, size)


def resident_fraction(path: str | os.PathLike) -> float:
    """Share of `path` held in the OS page cache, 0..1."""
    size = Path(path).stat().st_size
    return resident_bytes(path) / size if size else 0.0
