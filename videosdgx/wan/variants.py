"""Released Wan variants and their official sampling defaults (wan.md §1.2)."""

from __future__ import annotations

from dataclasses import dataclass

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.wan.text_prompt import WAN_FLF2V_NEGATIVE_PROMPT, WAN_I2V_NEGATIVE_PROMPT, WAN_NEGATIVE_PROMPT


@dataclass(frozen=True)
class WanVariant:
    """One released model: what it does, what files it needs, and how the reference samples it."""

    name: str
    title: str
    task: str  # "t2v" | "i2v" | "flf2v" | "ti2v"
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    shift: float
    guidance: float  # the only scale, or the high-noise expert's
    guidance_low: float | None = None  # low-noise expert of a two-expert (A14B) model
    boundary: float | None = None  # expert switch: high while t >= boundary * 1000
    clip_vision: bool = False
    vae: str = "2.1"
    negative_prompt: str = WAN_NEGATIVE_PROMPT  # used when the user gives none

    @property
    def experts(self) -> int:
        return 2 if self.boundary is not None else 1

    @property
    def size_multiple(self) -> int:
        """Pixel sizes must be multiples of this: VAE stride x DiT patch (8x2, or 16x2 for the Wan 2.2 VAE)."""
        return 32 if self.vae == "2.2" else 16


WAN_VARIANTS: dict[str, WanVariant] = {v.name: v for v in (
    WanVariant("wan2.1-t2v-1.3b", "Wan2.1 T2V-1.3B", "t2v", 832, 480, 81, 16, 50, 5.0, 5.0),
    WanVariant("wan2.1-t2v-14b", "Wan2.1 T2V-14B", "t2v", 1280, 720, 81, 16, 50, 5.0, 5.0),
    WanVariant("wan2.1-i2v-14b-480p", "Wan2.1 I2V-14B 480P", "i2v", 832, 480, 81, 16, 40, 3.0, 5.0,
               clip_vision=True, negative_prompt=WAN_I2V_NEGATIVE_PROMPT),
    WanVariant("wan2.1-flf2v-14b-720p", "Wan2.1 FLF2V-14B 720P", "flf2v", 1280, 720, 81, 16, 50, 16.0, 5.0,
               clip_vision=True, negative_prompt=WAN_FLF2V_NEGATIVE_PROMPT),
    WanVariant("wan2.2-t2v-a14b", "Wan2.2 T2V-A14B", "t2v", 1280, 720, 81, 16, 40, 12.0, 4.0, guidance_low=3.0,
               boundary=0.875),
    WanVariant("wan2.2-i2v-a14b", "Wan2.2 I2V-A14B", "i2v", 1280, 720, 81, 16, 40, 5.0, 3.5, guidance_low=3.5,
               boundary=0.900),
    WanVariant("wan2.2-ti2v-5b", "Wan2.2 TI2V-5B", "ti2v", 1280, 704, 121, 24, 50, 5.0, 5.0, vae="2.2"),
)}


def wan_variant(name: str) -> WanVariant:
    try:
        return WAN_VARIANTS[name]
    except KeyError:
        raise ConfigurationError(f"Unknown Wan model '{name}'. Choose one of: {', '.join(WAN_VARIANTS)}.") from None


def expert_boundary(task: str) -> float:
    """Where the Wan2.2 A14B release of `task` hands over from the high- to the low-noise expert."""
    for variant in WAN_VARIANTS.values():
        if variant.experts == 2 and variant.task == task:
            return variant.boundary
    raise ConfigurationError(
        f"Only Wan2.2 A14B (T2V / I2V) has a low-noise expert; this is a Wan {task} model. Load one model file."
    )
