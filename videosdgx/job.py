"""What every family's pipeline takes and returns: one request, one result, and the variant it runs.

Imports nothing heavy (no torch at import time), so the CLI can describe and check a job before any model code
is loaded. Tensors follow ComfyUI's conventions: IMAGE frames `[T, H, W, 3]` float in 0..1, AUDIO
`{"waveform": [1, C, N], "sample_rate": int}`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from videosdgx.runtime.errors import ConfigurationError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total); stage "loading" counts bytes
INPUT_KINDS = ("image", "end_image", "references", "video", "audio")


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One released model of a family, with the official defaults of its reference pipeline.

    `inputs` names the media a variant accepts (of INPUT_KINDS), `required` those it cannot run without. Frame
    counts are `frame_step * n + 1`; pixel sizes multiples of `size_multiple`. Families subclass this to add
    their own fields (Wan's expert boundary, LTX-2's stages, ...).
    """

    name: str
    title: str
    family: str
    task: str
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    guidance: float
    size_multiple: int = 16
    frame_step: int = 4
    inputs: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    max_references: int = 0
    per_chunk_prompts: bool = False  # takes a list of prompts, one per chunk (MAGI-1)
    negative_prompt: str = ""
    workflows: tuple[str, ...] = ()  # shipped API workflows, the text-only one first

    def check(self, request: "VideoRequest") -> None:
        """Refuse settings this variant cannot run (ConfigurationError naming valid values); called before loading.
        Families override it; the default accepts everything the generic checks passed."""

    def workflow_for(self, given: set[str]) -> str | None:
        """The shipped workflow taking exactly these media inputs (by the convention `<name>`, `<name>-flf` for a
        first and a last frame, `<name>-i2v` for an image, `<name>-v2v` for a video to continue)."""
        suffixes = ((frozenset({"image", "end_image"}), "-flf"), (frozenset({"image"}), "-i2v"),
                    (frozenset({"video"}), "-v2v"))
        for kinds, suffix in suffixes:
            found = [w for w in self.workflows if w.endswith(suffix)]
            if kinds <= given and found and not kinds & self.required:
                return found[0]
        plain = [w for w in self.workflows if not w.endswith(tuple(suffix for _, suffix in suffixes))]
        return plain[0] if plain else (self.workflows[0] if self.workflows else None)


@dataclass(frozen=True)
class LoraChoice:
    """A LoRA file to apply for one request at `strength`. `target`: "all" models of the pipeline, or one part of
    it by the family's name for it (Wan2.2 A14B: "high" / "low" noise expert)."""

    path: Path
    strength: float = 1.0
    target: str = "all"


@dataclass
class VideoRequest:
    """One video to make. None means the variant's official default; 0 is a value like any other."""

    prompt: str
    negative_prompt: str = ""
    prompts: tuple[str, ...] = ()  # per-chunk prompts for families that take them (MAGI-1); prompt is the first
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    fps: int | None = None
    guidance: float | None = None
    guidance_low: float | None = None  # the second guidance scale of a family that has one (Wan A14B low expert)
    shift: float | None = None
    solver: str | None = None
    seed: int = 0
    image: torch.Tensor | None = None  # start frame, IMAGE [1, H, W, 3]
    end_image: torch.Tensor | None = None
    references: tuple[torch.Tensor, ...] = ()
    video: torch.Tensor | None = None  # input video, IMAGE [T, H, W, 3]
    video_fps: float | None = None
    audio: dict | None = None  # AUDIO {"waveform": [1, C, N], "sample_rate": int}
    loras: tuple[LoraChoice, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # family-specific settings, documented by the family

    def given_inputs(self) -> set[str]:
        """The media inputs this request carries."""
        given = {kind for kind in ("image", "end_image", "video", "audio") if getattr(self, kind) is not None}
        return given | ({"references"} if self.references else set())


@dataclass
class VideoResult:
    """Frames `[T, H, W, 3]` float32 in 0..1, their rate, and the sound when the model makes (or keeps) some."""

    frames: torch.Tensor
    fps: float
    audio: dict | None = None
    latents: Any = field(default=None, repr=False)
    notes: tuple[str, ...] = ()  # what the pipeline changed (rounded sizes, clamped values), for the user


def fit_size(width: int, height: int, frames: int, multiple: int, frame_step: int) -> tuple[int, int, int, tuple[str, ...]]:
    """Round a size to the nearest valid one: sides multiples of `multiple`, `frame_step * n + 1` frames.

    Returns the corrected width, height, frames and one note per correction (also logged); refuses sizes below
    the smallest valid one instead of silently growing them.
    """
    if width < multiple or height < multiple or frames < 1:
        raise ConfigurationError(
            f"{width}x{height}, {frames} frames is too small: width and height must be at least {multiple} "
            f"(multiples of it) and frames at least 1 ({frame_step}n+1: 1, {frame_step + 1}, {2 * frame_step + 1}, ...)."
        )
    fixed_w = round(width / multiple) * multiple
    fixed_h = round(height / multiple) * multiple
    fixed_f = (frames - 1 + frame_step // 2) // frame_step * frame_step + 1
    notes = []
    if (fixed_w, fixed_h) != (width, height):
        notes.append(f"size {width}x{height} is not a multiple of {multiple}; using {fixed_w}x{fixed_h}")
    if fixed_f != frames:
        notes.append(f"{frames} frames is not {frame_step}n+1; using {fixed_f} frames")
    for note in notes:
        log.warning("%s", note)
    return fixed_w, fixed_h, fixed_f, tuple(notes)
