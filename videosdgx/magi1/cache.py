"""The key-value cache of clean chunks that MAGI-1's autoregressive chunk generation attends to."""

from __future__ import annotations

import torch


class ChunkKVCache:
    """Keys and values of clean chunks, per layer and absolute chunk index.

    Only the newest `keep` chunks are held (the widest key range a chunk may read, minus itself): older ones are
    dropped when a newer chunk is written, so memory does not grow with the length of the video. `keep=None`
    keeps every chunk. `device` may be a slower place (e.g. "cpu") than the model's; rows move on read.
    """

    def __init__(self, keep: int | None, device: torch.device | str | None = None):
        self.keep = keep
        self.device = None if device is None else torch.device(device)
        self._chunks: dict[int, dict[int, torch.Tensor]] = {}  # layer -> chunk index -> [B, G, tokens, 2*hd]

    def write(self, layer: int, first_chunk: int, kv: torch.Tensor, chunks: int) -> None:
        """Store `chunks` chunks of `kv [B, G, tokens, 2*hd]` (equal token counts) from chunk `first_chunk` on."""
        store = self._chunks.setdefault(layer, {})
        for i, rows in enumerate(kv.chunk(chunks, dim=2)):  # a compact copy: never a view of the caller's buffer
            store[first_chunk + i] = rows.to(self.device or rows.device, copy=True)
        if self.keep is not None:
            newest = max(store)
            for index in [i for i in store if i <= newest - self.keep]:
                del store[index]

    def read(self, layer: int, first_chunk: int, end_chunk: int) -> list[torch.Tensor]:
        """The stored chunks `[first_chunk, end_chunk)`, oldest first (the caller copies them where it needs them:
        concatenating here would cost a copy of the whole range per layer)."""
        store = self._chunks.get(layer, {})
        missing = [i for i in range(first_chunk, end_chunk) if i not in store]
        if missing:
            raise RuntimeError(f"chunks {missing} are not in the key-value cache (it keeps {self.keep})")
        return [store[i] for i in range(first_chunk, end_chunk)]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for store in self._chunks.values() for t in store.values())

    def clear(self) -> None:
        self._chunks.clear()
