"""3D neighbourhood attention (NATTEN's `na3d`) in plain torch, with memory bounded by the window, not the grid.

Each query at (t, h, w) attends to a `kernel` window of keys that is centred on it where possible and shifted
inward at the grid's borders, so it always holds exactly `kernel` positions (NATTEN's rule, which diffusers'
flex-attention mask and ltx-core's kernels reproduce). Here the queries run one frame at a time in spatial tiles:
a tile of `tile` rows x columns reads only the key block its windows span (`tile + kernel - 1` per side, `kernel`
frames) through the shared SDPA entry point, with a boolean mask that keeps each query's own window. Same maths as
the dense mask; memory is a few frames' worth of keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from videosdgx.runtime.attention import attention


def window_starts(size: int, kernel: int, device: torch.device | None = None) -> torch.Tensor:
    """First key position of each query's window along one axis: centred, shifted inward at the borders."""
    return (torch.arange(size, device=device) - kernel // 2).clamp(0, size - kernel)


@dataclass(frozen=True)
class AxisTiles:
    """One spatial axis cut into query tiles: which queries each tile holds, the key span it reads, which keys
    each of its queries may see, and which of its outputs are kept (the last tile overlaps the one before)."""

    queries: torch.Tensor  # [tiles, tile] query positions
    keys: torch.Tensor  # [tiles, span] key positions
    allowed: torch.Tensor  # [tiles, tile, span] bool
    kept: torch.Tensor  # positions in the flattened [tiles * tile] output that make up 0..size-1, in order

    @classmethod
    def build(cls, size: int, kernel: int, tile: int, device: torch.device) -> "AxisTiles":
        tile = min(tile, size)
        span = min(tile + kernel - 1, size)
        starts = list(range(0, size - tile + 1, tile))
        if starts[-1] + tile < size:
            starts.append(size - tile)
        first = torch.tensor(starts, device=device)
        queries = first[:, None] + torch.arange(tile, device=device)
        window = window_starts(size, kernel, device)[queries]  # [tiles, tile]
        base = torch.minimum(window[:, 0], torch.tensor(size - span, device=device))
        keys = base[:, None] + torch.arange(span, device=device)
        allowed = (keys[:, None, :] >= window[..., None]) & (keys[:, None, :] < window[..., None] + kernel)
        skip = [0] + [max(0, starts[i - 1] + tile - starts[i]) for i in range(1, len(starts))]
        kept = torch.cat([i * tile + torch.arange(skip[i], tile, device=device) for i in range(len(starts))])
        return cls(queries, keys, allowed, kept)


def neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int, int],
                           tile: tuple[int, int] | None = None) -> torch.Tensor:
    """`q`, `k`, `v` `[B, T, H, W, heads, head_dim]` (queries already scaled) -> the same shape.

    A kernel larger than the grid is cut to the grid (every key is then in every window). `tile` (rows, columns)
    of queries per attention call defaults to the kernel's spatial size.
    """
    batch, frames, height, width, heads, dim = q.shape
    kt, kh, kw = (min(k_, n) for k_, n in zip(kernel, (frames, height, width)))
    th, tw = tile or (kh, kw)
    rows = AxisTiles.build(height, kh, th, q.device)
    cols = AxisTiles.build(width, kw, tw, q.device)
    n_rows, th = rows.queries.shape
    n_cols, tw = cols.queries.shape
    span_h, span_w = rows.keys.shape[1], cols.keys.shape[1]
    mask = rows.allowed[:, None, :, None, None, :, None] & cols.allowed[None, :, None, :, None, None, :]
    mask = mask.expand(-1, -1, -1, -1, kt, -1, -1).reshape(1, n_rows * n_cols, 1, th * tw, kt * span_h * span_w)
    mask = mask.expand(batch, -1, -1, -1, -1).flatten(0, 1)
    q_rows, q_cols = rows.queries[:, None, :, None], cols.queries[None, :, None, :]
    k_rows, k_cols = rows.keys[:, None, :, None], cols.keys[None, :, None, :]
    starts = window_starts(frames, kt).tolist()
    out = []
    for t, start in enumerate(starts):
        query = q[:, t][:, q_rows, q_cols]  # [B, nr, nc, th, tw, heads, dim]
        query = query.reshape(batch, n_rows * n_cols, th * tw, heads, dim).permute(0, 1, 3, 2, 4)
        keys, values = (_key_blocks(x[:, start:start + kt], k_rows, k_cols) for x in (k, v))
        tiles = attention(query.flatten(0, 1), keys, values, mask=mask, scale=1.0)
        tiles = tiles.reshape(batch, n_rows, n_cols, heads, th, tw, dim).permute(0, 1, 4, 2, 5, 3, 6)
        tiles = tiles.reshape(batch, n_rows * th, n_cols * tw, heads, dim)
        out.append(tiles.index_select(1, rows.kept).index_select(2, cols.kept))
    return torch.stack(out, dim=1)


def _key_blocks(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The key block of every tile: `x [B, kt, H, W, heads, dim]` -> `[B * tiles, heads, kt * span_h * span_w, dim]`."""
    x = x[:, :, rows, cols]  # [B, kt, n_rows, n_cols, span_h, span_w, heads, dim]
    x = x.permute(0, 2, 3, 6, 1, 4, 5, 7)
    return x.reshape(x.shape[0] * x.shape[1] * x.shape[2], x.shape[3], -1, x.shape[-1])
