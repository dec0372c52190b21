"""Released MAGI-1 variants with the official example settings (magi1.md §1, §7), and the request check that runs
before any model is loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass

from videosdgx.job import Variant, VideoRequest
from videosdgx.magi1.sampler import SamplerSettings
from videosdgx.runtime.errors import ConfigurationError

CHUNK_FRAMES = 24  # 6 latent frames of 4 video frames
PREFIX_VIDEO_FRAMES = 32  # V2V keeps the first 32 frames of the input video (8 latent frames)


@dataclass(frozen=True, kw_only=True)
class MagiVariant(Variant):
    size: str  # DiT size in config.DIT_CONFIGS
    distill: bool
    guidance_passes: int  # 3 (text, previous chunks, unconditional) or 1 (distilled)
    window: int = 4
    noise2clean_kvrange: tuple[int, ...] = (5, 4, 3, 2)

    def sampler_settings(self, request: VideoRequest) -> SamplerSettings:
        """The sampler settings of `request`, or ConfigurationError naming valid values (checks only, no loading)."""
        steps = self.steps if request.steps is None else request.steps
        stages = math.lcm(self.window, len(self.noise2clean_kvrange))
        if steps <= 0 or steps % stages or steps == 12:
            raise ConfigurationError(
                f"{self.title} takes a number of steps divisible by {stages} (the chunk window of {self.window} and "
                f"the {len(self.noise2clean_kvrange)} attention stages), other than 12; got {steps}. "
                f"Use e.g. {', '.join(str(stages * k) for k in (2, 4, 8, 16))} (default {self.steps})."
            )
        passes = request.options.get("guidance_passes", self.guidance_passes)
        if passes != self.guidance_passes:
            raise ConfigurationError(
                f"{self.title} runs {self.guidance_passes} guidance pass(es) per step "
                f"({'distilled: guidance is built in' if self.distill else 'text, previous chunks, unconditional'}); "
                f"got {passes}. Use {self.guidance_passes}, or the {'base' if self.distill else 'distill'} variant."
            )
        for name, value in (("width", request.width or self.width), ("height", request.height or self.height)):
            if value % self.size_multiple or value <= 0:
                near = max(self.size_multiple, round(value / self.size_multiple) * self.size_multiple)
                raise ConfigurationError(
                    f"{self.title}: the {name} must be a positive multiple of {self.size_multiple}; got {value}. "
                    f"Use {near}."
                )
        return SamplerSettings(steps=steps, distill=self.distill, window=self.window,
                               noise2clean_kvrange=self.noise2clean_kvrange)

    def check(self, request: VideoRequest) -> None:
        """Refuse impossible settings before loading (steps, guidance passes, sizes, inputs)."""
        self.sampler_settings(request)
        if request.image is not None and request.video is not None:
            raise ConfigurationError(f"{self.title} continues either an image or a video, not both.")


def _variant(name: str, title: str, size: str, distill: bool, steps: int, width: int,
             workflows: tuple[str, ...] = ()) -> MagiVariant:
    return MagiVariant(
        name=name, title=title, family="magi1", task="t2v", width=width, height=720, frames=96, fps=24, steps=steps,
        guidance=1.0 if distill else 7.5, inputs=frozenset({"image", "video"}), per_chunk_prompts=True,
        size=size, distill=distill, guidance_passes=1 if distill else 3, workflows=workflows,
    )


MAGI1_VARIANTS: dict[str, MagiVariant] = {v.name: v for v in (
    _variant("magi-1-4.5b-distill", "MAGI-1 4.5B distill", "4.5B", True, 64, 720,
             ("magi-1-4.5b-distill", "magi-1-4.5b-distill-i2v")),
    _variant("magi-1-4.5b-base", "MAGI-1 4.5B base", "4.5B", False, 64, 720),
    _variant("magi-1-24b-distill", "MAGI-1 24B distill", "24B", True, 16, 1280),
    _variant("magi-1-24b-base", "MAGI-1 24B base", "24B", False, 32, 1280),
    # The fp8 release: the loader reads its float8 layers from the file (magi1.md §2.3); the settings are distill's.
    _variant("magi-1-24b-distill-fp8", "MAGI-1 24B distill fp8", "24B", True, 16, 1280, ("magi-1-24b-distill-fp8",)),
)}
