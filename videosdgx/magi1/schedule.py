"""MAGI-1's sampling schedules (magi1.md §4): time steps, the chunk window, key ranges and guidance scales.

Time runs from 0 (noise) to 1 (clean). Everything is computed in float32 as the reference does: the schedule ends
at 1.0000001 and its step at s = 0.75 is 0.30000001, just above the 0.3 thresholds, which decides where the
guidance regime and the distilled models' nearly-clean rule switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def time_schedule(steps: int, shift: float = 3.0) -> torch.Tensor:
    """`steps + 1` times: s² of a uniform grid, then the shift `x / (shift - (shift - 1) x)` (as `1/shift`-form)."""
    x = torch.linspace(0, 1, steps + 1) ** 2
    inv = 1.0 / shift
    return inv * x / (1 + (inv - 1) * x)


@dataclass(frozen=True)
class Stage:
    """One position of the window: chunks `[first, end)` denoise together at levels `[level_start, level_end)`."""

    first: int
    end: int
    level_start: int
    level_end: int


def window_stages(chunks: int, window: int, offset: int = 0) -> list[Stage]:
    """The reference's window walk: a new chunk enters per stage, the oldest leaves when it reached the last level.

    `offset` clean prefix chunks (V2V) are never denoised.
    """
    stages = []
    for i in range(offset, chunks + window - 1):
        end_level = min(window, i - offset + 1) if i - offset < window else window
        stages.append(Stage(max(offset, i - window + 1), min(chunks, i + 1), max(0, i - chunks + 1), end_level))
    return stages


def kv_range(chunk: int, step: int, steps: int, noise2clean: Sequence[int], clean_range: int) -> tuple[int, int]:
    """Chunks `[start, chunk + 1)` that `chunk` attends to at denoising `step` (`step == steps`: a clean chunk)."""
    if step == steps:
        width = clean_range
    elif noise2clean:
        width = noise2clean[step // (steps // len(noise2clean))]
    else:
        width = chunk + 1
    return max(0, chunk + 1 - width), chunk + 1


def guidance_scales(t: float, t_range: Sequence[float], prev_scales: Sequence[float],
                    text_scales: Sequence[float]) -> tuple[float, float]:
    """(previous-chunk scale, text scale) for a chunk at time `t` (the reference's float32 lookup)."""
    edges = torch.tensor(t_range, dtype=torch.float32) - 1e-7
    index = int(torch.searchsorted(edges, torch.tensor(t, dtype=torch.float32))) - 1
    return prev_scales[index], text_scales[index]


def distill_step_size(steps: int) -> float:
    """The step-size input of the distilled models: `steps / 4 * 2` (shortcut distillation)."""
    return steps / 4 * 2
