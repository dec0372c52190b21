"""What every family's pipeline takes and returns: one request, one result, and the variant it runs.

Imports nothing heavy (no torch at import time), so the CLI can describe and check a job before any model code
is loaded. Tensors follow ComfyUI's conventions: IMAGE frames `[T, H, W, 3]` float in 0..1, AUDIO
`{"waveform": [1, C, N], "sample_rate": int}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

Progress = Callable[[str, int, int], None]  # (stage, done, total); stage "loading" counts bytes
INPUT_KINDS = ("image", "end_image", "references", "video", "audio")


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One released model of a family, with the official defaults of its reference pipeline.

    `inputs` names the media a variant accepts (of INPUT_KINDS), `required` those it cannot run without. Frame
    counts are `frame_step * k + 1`; pixel sizes multiples of `size_multiple`. Families subclass this to add
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
    negative_prompt: str = ""
    workflows: tuple[str, ...] = ()  # shipped API workflows, the text-only one first

    def workflow_for(self, given: set[str]) -> str | None:
        """The shipped workflow taking exactly these media inputs (by the convention `<name>` / `<name>-i2v`)."""
        image_workflow = [w for w in self.workflows if w.endswith("-i2v")]
        plain = [w for w in self.workflows if not w.endswith("-i2v")]
        if "image" in given and image_workflow and "image" not in self.required:
            return image_workflow[0]
        return plain[0] if plain else (self.workflows[0] if self.workflows else None)


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
