"""Released Wan variants and their official sampling defaults (wan.md §1.2)."""

from __future__ import annotations

from dataclasses import dataclass

from videosdgx.job import Variant
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.wan.text_prompt import WAN_FLF2V_NEGATIVE_PROMPT, WAN_I2V_NEGATIVE_PROMPT, WAN_NEGATIVE_PROMPT


I2V = frozenset({"image"})
FLF2V = frozenset({"image", "end_image"})


@dataclass(frozen=True, kw_only=True)
class WanVariant(Variant):
    """A released Wan model: the shared defaults plus its shift, experts, image encoder and VAE."""

    family: str = "wan"
    shift: float
    guidance_low: float | None = None  # low-noise expert of a two-expert (A14B) model
    boundary: float | None = None  # expert switch: high while t >= boundary * 1000
    clip_vision: bool = False
    vae: str = "2.1"
    negative_prompt: str = WAN_NEGATIVE_PROMPT  # used when the user gives none
    solver: str = "unipc"
    schedule: str = "wan"  # "wan": Wan's shifted grid; "lightning": Wan2.2 Lightning's (wan/lightning.py)

    @property
    def experts(self) -> int:
        return 2 if self.boundary is not None else 1


def _wan(name: str, title: str, task: str, size: tuple[int, int], fps: int, steps: int, shift: float,
         guidance: float, **options) -> WanVariant:
    inputs = {"t2v": frozenset(), "i2v": I2V, "flf2v": FLF2V, "ti2v": I2V}[task]
    return WanVariant(
        name=name, title=title, task=task, width=size[0], height=size[1], frames=options.pop("frames", 81), fps=fps,
        steps=steps, shift=shift, guidance=guidance, inputs=inputs, required=inputs if task != "ti2v" else frozenset(),
        size_multiple=32 if options.get("vae") == "2.2" else 16, workflows=options.pop("workflows", (name,)),
        **options,
    )


WAN_VARIANTS: dict[str, WanVariant] = {v.name: v for v in (
    _wan("wan2.1-t2v-1.3b", "Wan2.1 T2V-1.3B", "t2v", (832, 480), 16, 50, 5.0, 5.0),
    _wan("wan2.1-t2v-14b", "Wan2.1 T2V-14B", "t2v", (1280, 720), 16, 50, 5.0, 5.0),
    _wan("wan2.1-i2v-14b-480p", "Wan2.1 I2V-14B 480P", "i2v", (832, 480), 16, 40, 3.0, 5.0, clip_vision=True,
         negative_prompt=WAN_I2V_NEGATIVE_PROMPT),
    _wan("wan2.1-i2v-14b-720p", "Wan2.1 I2V-14B 720P", "i2v", (1280, 720), 16, 40, 5.0, 5.0, clip_vision=True,
         negative_prompt=WAN_I2V_NEGATIVE_PROMPT, workflows=()),
    _wan("wan2.1-flf2v-14b-720p", "Wan2.1 FLF2V-14B 720P", "flf2v", (1280, 720), 16, 50, 16.0, 5.0, clip_vision=True,
         negative_prompt=WAN_FLF2V_NEGATIVE_PROMPT, workflows=()),
    _wan("wan2.2-t2v-a14b", "Wan2.2 T2V-A14B", "t2v", (1280, 720), 16, 40, 12.0, 4.0, guidance_low=3.0,
         boundary=0.875),
    _wan("wan2.2-i2v-a14b", "Wan2.2 I2V-A14B", "i2v", (1280, 720), 16, 40, 5.0, 3.5, guidance_low=3.5,
         boundary=0.900),
    _wan("wan2.2-t2v-a14b-lightning", "Wan2.2 T2V-A14B Lightning (4 steps)", "t2v", (1280, 720), 16, 4, 5.0, 1.0,
         guidance_low=1.0, boundary=0.875, solver="euler", schedule="lightning"),
    _wan("wan2.2-i2v-a14b-lightning", "Wan2.2 I2V-A14B Lightning (4 steps)", "i2v", (1280, 720), 16, 4, 5.0, 1.0,
         guidance_low=1.0, boundary=0.900, solver="euler", schedule="lightning"),
    _wan("wan2.2-ti2v-5b", "Wan2.2 TI2V-5B", "ti2v", (1280, 704), 24, 50, 5.0, 5.0, frames=121, vae="2.2",
         workflows=("wan2.2-ti2v-5b-t2v", "wan2.2-ti2v-5b-i2v")),
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
