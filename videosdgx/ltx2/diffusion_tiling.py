"""Tiles of the LTX-2.5 diffusion video decoder (ltx-core `diffusion_tiling.py`, `tiling.py` @ 400fd310).

Stages 1-3 run once on the whole latent; stage 4 and the diffusion stage (every refinement step) run per tile, in
isolation, on the grid entering stage 4. One cell of that grid is `pixel_scale` pixels: the last upsampler's
temporal stride in frames, its spatial stride times the patch size in pixels (2, 8, 8 in the release).
* Sizes (`TileSizes`) are in pixels / frames, 0 = the whole axis; the overlaps are not free: each axis overlaps by
  the stages' one-sided receptive field ("halo": stage 4's `depth * (kernel // 2)`, stage 5's the same over the
  upsampler's stride) in pixels, rounded up to the VAE's stride (8 frames, 32 pixels in the release).
* An axis of `length` cells is cut like `split_by_size`: tiles of `size` cells starting every `size - overlap`,
  the last one ending at `length` (grown back to the smallest legal tile when shorter); neighbours share `overlap`
  cells, ramped down / up by symmetric trapezoid weights `i / (ramp + 1)`, which sum to one over every pixel.
* A cell interval maps to pixels like the pixel-shuffle upsampler: `x stride` spatially (and the patch); in time
  `[2s - 1, 2e - 1)` (`[0, 2e - 1)` for the first tile, whose duplicate leading frame is dropped).
* The automatic choice (ltx-core `recommended_decode_tiling_config`) tries every legal size on the VAE's grid per
  axis, from twice the overlap up, keeps those whose estimated peak fits the free memory (less 1 GiB) and takes the
  least recomputed volume (then the largest tile, then the fewest). The estimate is ours, measured on our code
  (bench/ltx25.py --fit; ltx-core's coefficients are for its kernels): the larger of stages 1-3 on the whole clip
  and, after them, their output (stage 4's input, resident) + a temporal group's blend buffer (two tile lengths of
  full frames) + one tile's stage 4 + stage 5 working set per stage-5 token. The decoder is loaded already, so its
  weights are not counted; the noise and the frames wait on the CPU.
Unlike ltx-core, the whole clip's starting noise waits on the CPU (each tile takes its part to the device), and
tile sizes below the smallest automatic one (twice the overlap) are refused rather than blended with normalised
weights (the weights are still normalised should they not sum to one, as ltx-core does).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.memory import GB, memory_status

if TYPE_CHECKING:
    from videosdgx.ltx2.diffusion_decoder import DiffusionDecoderConfig

log = logging.getLogger(__name__)
TILE_VALUES_PER_TOKEN = 13.0  # one tile's peak in stage-5 widths per stage-5 token (measured 11.2-13.0, ltx25.py --fit)
FEATURE_COPIES = 2.4  # stages 1-3 on the whole clip: stage-4 inputs alive at their peak (measured 2.30-2.33)
SAFETY = 1 << 30  # bytes held back from the free memory (ltx-core's eager margin)


@dataclass(frozen=True)
class TileSizes:
    """Tile extents in pixel frames / pixels; 0 = not tiled along that axis."""

    frames: int = 0
    height: int = 0
    width: int = 0

    def __str__(self) -> str:
        return ", ".join([f"{self.frames} frames" if self.frames else "all frames",
                          f"{self.height} px high" if self.height else "full height",
                          f"{self.width} px wide" if self.width else "full width"])


@dataclass(frozen=True)
class Interval:
    """One tile along one axis in stage-4 cells, with its blend ramps (cells shared with each neighbour)."""

    start: int
    end: int
    left: int
    right: int


@dataclass(frozen=True)
class Tile:
    """One tile: its stage-4 cells and output pixels per axis (T, H, W), its 1-D blend weights per axis, whether it
    holds the first frame (drops the upsampler's duplicate) and the last (carries the ghost frames)."""

    cells: tuple[slice, slice, slice]
    pixels: tuple[slice, slice, slice]
    weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    origin: bool
    trailing: bool


def pixel_scale(cfg: DiffusionDecoderConfig) -> tuple[int, int, int]:
    """Pixels (frames, rows, columns) per stage-4 cell."""
    st, sh, sw = cfg.upsamples[-1][0]
    return st, sh * cfg.patch_size, sw * cfg.patch_size


def overlaps(cfg: DiffusionDecoderConfig) -> tuple[int, int]:
    """The required (frames, pixels) overlaps: the larger halo of stages 4 and 5 in pixels, rounded up to the VAE's
    temporal / spatial stride."""
    kernel4, depth4, stride = cfg.stage_kernels[-1], cfg.stage_depths[-2], cfg.upsamples[-1][0]
    halo4 = [depth4 * (k // 2) for k in kernel4]
    halo5 = [-(-(cfg.stage_depths[-1] * (k // 2)) // s) for k, s in zip(cfg.stage5_kernel, stride)]
    ft, fh, _ = pixel_scale(cfg)
    frames = _round_up(max(halo4[0], halo5[0]) * ft, cfg.temporal_factor)
    pixels = _round_up(max(halo4[1], halo4[2], halo5[1], halo5[2]) * fh, cfg.spatial_factor)
    return frames, pixels


def min_tile_cells(cfg: DiffusionDecoderConfig) -> tuple[int, int, int]:
    """Smallest tile in stage-4 cells: stage 4 and stage 5 each see at least their window."""
    stride = cfg.upsamples[-1][0]
    return tuple(max(k4, -(-k5 // s)) for k4, k5, s in zip(cfg.stage_kernels[-1], cfg.stage5_kernel, stride))


def smallest_tiles(cfg: DiffusionDecoderConfig) -> tuple[int, int]:
    """The smallest legal (frames, pixels) tile: twice the overlap (so the ramps fit and the weights sum to one),
    at least the smallest tile and two VAE strides, on the VAE's grid."""
    (ft, fh, fw), (over_t, over_hw), cells = pixel_scale(cfg), overlaps(cfg), min_tile_cells(cfg)
    step_t, step_hw = math.lcm(ft, cfg.temporal_factor), math.lcm(fh, fw, cfg.spatial_factor)
    frames = max(2 * ft, 2 * over_t, cells[0] * ft, 2 * cfg.temporal_factor)
    pixels = max(2 * fh, 2 * over_hw, cells[1] * fh, cells[2] * fw, 2 * cfg.spatial_factor)
    return _round_up(frames, step_t), _round_up(pixels, step_hw)


def trapezoid(length: int, left: int, right: int) -> torch.Tensor:
    """Blend weights of one tile along one axis: ramps of `left` / `right` values `i / (ramp + 1)` up, then down."""
    left, right = max(0, min(left, length)), max(0, min(right, length))
    weights = torch.ones(length)
    if left:
        weights[:left] *= torch.linspace(0.0, 1.0, left + 2)[1:-1]
    if right:
        weights[-right:] *= torch.linspace(1.0, 0.0, right + 2)[1:-1]
    return weights.clamp_(0, 1)


def split_axis(length: int, size: int, overlap: int, min_size: int | None = None) -> list[Interval]:
    """`length` cells as tiles of `size` overlapping by `overlap`; a last tile shorter than `min_size` grows back."""
    if length <= size or (min_size is not None and length < min_size):
        return [Interval(0, length, 0, 0)]
    step = size - overlap
    count = (length + size - 2 * overlap - 1) // step
    tiles = [Interval(i * step, i * step + size, overlap if i else 0, overlap) for i in range(count - 1)]
    tiles.append(Interval((count - 1) * step, length, overlap, 0))
    last = tiles[-1]
    if min_size is not None and last.end - last.start < min_size:
        start = length - min_size
        shared = tiles[-2].end - start
        tiles[-2:] = [Interval(tiles[-2].start, tiles[-2].end, tiles[-2].left, shared),
                      Interval(start, length, shared, 0)]
    return tiles


def to_pixels(interval: Interval, stride: int, causal: bool) -> Interval:
    """A cell interval in output pixels: `x stride`; in time with stride 2, one frame earlier at both ends (the
    first tile keeps 0: its duplicate leading frame is dropped)."""
    start, end = interval.start * stride, interval.end * stride
    if causal and stride == 2:
        start, end = start - (interval.start != 0), end - 1
    return Interval(start, end, interval.left * stride, interval.right * stride)


def stage4_grid(cfg: DiffusionDecoderConfig, latent: tuple[int, int, int]) -> tuple[int, int, int]:
    """Cells (T, H, W) of the grid entering stage 4 for latents `latent` (T, H, W; no ghost frames)."""
    t, h, w = latent
    for (st, sh, sw), _ in cfg.upsamples[:-1]:
        t, h, w = t * st - (st == 2), h * sh, w * sw
    return t, h, w


def tile_groups(cfg: DiffusionDecoderConfig, grid: tuple[int, int, int], sizes: TileSizes) -> list[list[Tile]]:
    """The tiles of a stage-4 `grid` (T, H, W), grouped by temporal interval (in order), each group row-major."""
    scale, overlap, minimum = pixel_scale(cfg), overlaps(cfg), min_tile_cells(cfg)
    axes = []
    for axis, (length, size) in enumerate(zip(grid, (sizes.frames, sizes.height, sizes.width))):
        f, over = scale[axis], overlap[0 if axis == 0 else 1] // scale[axis]
        intervals = [Interval(0, length, 0, 0)] if size <= 0 else \
            split_axis(length, max(2, over + 1, size // f), over, minimum[axis])
        axes.append([(cells, to_pixels(cells, f, causal=axis == 0)) for cells in intervals])
    groups = []
    for t_cells, t_px in axes[0]:
        group = []
        for (h_cells, h_px), (w_cells, w_px) in itertools.product(axes[1], axes[2]):
            pairs = ((t_cells, t_px), (h_cells, h_px), (w_cells, w_px))
            group.append(Tile(cells=tuple(slice(c.start, c.end) for c, _ in pairs),
                              pixels=tuple(slice(p.start, p.end) for _, p in pairs),
                              weights=tuple(trapezoid(p.end - p.start, p.left, p.right) for _, p in pairs),
                              origin=t_cells.start == 0, trailing=t_cells.end == grid[0]))
        groups.append(group)
    return groups


def weight_sums(groups: list[list[Tile]], shape: tuple[int, int, int]) -> tuple[torch.Tensor, ...] | None:
    """Per-axis sums of the blend weights over the pixels `shape` (T, H, W), or None where they are all one (the
    usual case: then the blend needs no division)."""
    sums = [torch.zeros(n) for n in shape]
    for axis in range(3):
        seen = set()
        for tile in itertools.chain.from_iterable(groups):
            span = tile.pixels[axis]
            if (span.start, span.stop) not in seen:
                seen.add((span.start, span.stop))
                sums[axis][span] += tile.weights[axis]
    if all(torch.allclose(s, torch.ones_like(s), atol=1e-5, rtol=0) for s in sums):
        return None
    return tuple(sums)


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """The blend buffer's dtype (ltx-core): float16 for bfloat16 decoding, else the decoding dtype."""
    return torch.float16 if dtype == torch.bfloat16 else dtype


# ------------------------------------------------------------------------------------------------ memory

def stage4_input_bytes(cfg: DiffusionDecoderConfig, latent: tuple[int, int, int], cb: int) -> int:
    """Stage 4's input for the whole clip (padded to the smallest latent, ghost frames included): made once,
    resident while the tiles run."""
    t, h, w = (max(n, m) for n, m in zip(latent, cfg.min_latent_size()))
    t, h, w = stage4_grid(cfg, (t + cfg.ghost_frames, h, w))
    return t * h * w * cfg.stage_channels[-2] * cb


def tile_bytes(cfg: DiffusionDecoderConfig, tile: tuple[int, int, int], full: tuple[int, int], cb: int) -> int:
    """One tile of (frames, rows, columns) pixels on frames of `full` (rows, columns): the temporal group's blend
    buffer (two tile lengths of full frames) and the tile's stage-4 / stage-5 working set."""
    frames, rows, cols = tile
    width = cfg.stage5_channels or cfg.stage_channels[-1]
    tokens = frames * max(1, rows // cfg.patch_size) * max(1, cols // cfg.patch_size)
    buffer = 2 * frames * full[0] * full[1] * cfg.out_channels * cb  # float16 for bfloat16: the same size
    return int(buffer + tokens * width * cb * TILE_VALUES_PER_TOKEN)


def decode_phases(cfg: DiffusionDecoderConfig, latent: tuple[int, int, int], sizes: TileSizes,
                  cb: int) -> tuple[int, int]:
    """Estimated peaks on the decoder's device of decoding `latent` (T, H, W) in tiles of `sizes` (0: whole axis):
    stages 1-3 (`FEATURE_COPIES` stage-4 inputs), then the stage-4 input and one tile."""
    frames, rows, cols = pixel_size(cfg, latent)
    tile = tuple(min(s, n) if s else n for s, n in zip((sizes.frames, sizes.height, sizes.width),
                                                       (frames, rows, cols)))
    features = stage4_input_bytes(cfg, latent, cb)
    return int(FEATURE_COPIES * features), features + tile_bytes(cfg, tile, (rows, cols), cb)


def device_peak(cfg: DiffusionDecoderConfig, latent: tuple[int, int, int], sizes: TileSizes, cb: int) -> int:
    """The larger of `decode_phases`."""
    return max(decode_phases(cfg, latent, sizes, cb))


def pixel_size(cfg: DiffusionDecoderConfig, latent: tuple[int, int, int]) -> tuple[int, int, int]:
    """Output (frames, rows, columns) of `latent` (T, H, W), padded up to the decoder's smallest latent."""
    t, h, w = (max(n, m) for n, m in zip(latent, cfg.min_latent_size()))
    return (t - 1) * cfg.temporal_factor + 1, h * cfg.spatial_factor, w * cfg.spatial_factor


def choose_tiles(cfg: DiffusionDecoderConfig, latent: tuple[int, int, int], free: int, cb: int,
                 frames: int | None = None, pixels: int | None = None) -> TileSizes | None:
    """The tiles for decoding `latent` (T, H, W) in `free` bytes: `frames` / `pixels` (square spatial tiles) as
    given, else chosen; None when nothing fits (not even the smallest tiles)."""
    n_frames, rows, cols = pixel_size(cfg, latent)
    (ft, fh, fw), (over_t, over_hw) = pixel_scale(cfg), overlaps(cfg)
    step_t, step_hw = math.lcm(ft, cfg.temporal_factor), math.lcm(fh, fw, cfg.spatial_factor)
    min_t, min_hw = smallest_tiles(cfg)

    def candidates(length: int, overlap: int, smallest: int, step: int, given: int | None) -> list[tuple[int, int]]:
        """(size, tiles) along one axis: every size on the grid from the smallest to the whole axis, or the given
        one (0: the whole axis)."""
        whole = max(_round_up(length, step), smallest)
        sizes = range(smallest, whole + 1, step) if given is None else [given or whole]
        return [(size, len(split_axis(length, size, overlap))) for size in sizes]

    features = stage4_input_bytes(cfg, latent, cb)
    budget = free - SAFETY - features  # for one tile, after stages 1-3
    if FEATURE_COPIES * features > free - SAFETY:
        return None
    scored = []
    for (t, n_t), (h, n_h) in itertools.product(candidates(n_frames, over_t, min_t, step_t, frames),
                                                candidates(rows, over_hw, min_hw, step_hw, pixels)):
        for w, n_w in candidates(cols, over_hw, min_hw, step_hw, pixels):  # growing sizes: stop at the first misfit
            if tile_bytes(cfg, (min(t, n_frames), min(h, rows), min(w, cols)), (rows, cols), cb) > budget:
                break
            waste = n_t * n_h * n_w * t * h * w / (n_frames * rows * cols)
            scored.append((waste, -t * h * w, n_t * n_h * n_w, t, h, w))
    if not scored:
        return None
    _, _, _, t, h, w = min(scored)
    return _whole_as_zero(TileSizes(t, h, w), (n_frames, rows, cols))


def _whole_as_zero(sizes: TileSizes, lengths: tuple[int, int, int]) -> TileSizes:
    return TileSizes(*(0 if size >= length else size
                       for size, length in zip((sizes.frames, sizes.height, sizes.width), lengths)))


# ------------------------------------------------------------------------------------------------ options
TILE_OPTIONS = {"decoder_tile_frames": "frames", "decoder_tile_size": "pixels"}


def requested_tiles(cfg: DiffusionDecoderConfig, options: dict) -> tuple[int | None, int | None]:
    """(frames, pixels) of `--option decoder_tile_frames` / `decoder_tile_size` (None: not given, 0: that axis
    untiled), refused below this decoder's smallest tiles (the values' form is checked before loading, in
    `LTX2Variant.check`)."""
    smallest = smallest_tiles(cfg)
    over = overlaps(cfg)
    values = []
    for (key, unit), least, overlap in zip(TILE_OPTIONS.items(), smallest, over):
        value = options.get(key)
        if value is not None and 0 < value < least:
            raise ConfigurationError(
                f"--option {key}={value}: this diffusion video decoder's tiles are at least {least} {unit} (they "
                f"overlap by {overlap}); give {least} or more, or 0 for no tiling along that axis.")
        values.append(value)
    return values[0], values[1]


def decoder_tiles(decoder, latent: tuple[int, int, int], options: dict) -> TileSizes | None:
    """The tiles for decoding `latent` (T, H, W) with `decoder`: the options' sizes, the rest chosen from the free
    memory (`choose_tiles`; on a CPU or a unified-memory machine less the clip's noise and frames, which wait in
    host memory); the smallest tiles, with a warning, when nothing fits. None: decode in one piece."""
    cfg = decoder.config
    frames, pixels = requested_tiles(cfg, options)
    if frames == 0 and pixels == 0:
        return None
    weight = next(decoder.parameters())
    status, cb = memory_status(weight.device), weight.dtype.itemsize
    free = status.usable
    if status.unified or weight.device.type == "cpu":  # the clip's noise and float32 frames share the pool
        free -= math.prod(pixel_size(cfg, latent)) * cfg.out_channels * (cb + 4)
    tiles = choose_tiles(cfg, latent, free, cb, frames, pixels)
    if tiles is None:
        least_t, least_hw = smallest_tiles(cfg)
        fallback = TileSizes(least_t if frames is None else frames, *(2 * [least_hw if pixels is None else pixels]))
        tiles = _whole_as_zero(fallback, pixel_size(cfg, latent))
        log.warning("The diffusion video decoder's estimated peak with the smallest tiles (%s) exceeds the free "
                    "%.1f GB; decoding with them anyway.", tiles, free / GB)
    peak = device_peak(cfg, latent, tiles, cb)
    log.info("Diffusion video decoder tiles: %s; estimated peak %.2f GB of %.1f GB free.", tiles, peak / GB,
             free / GB)
    return None if tiles == TileSizes() else tiles


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
