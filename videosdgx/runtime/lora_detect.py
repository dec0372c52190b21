"""Identify LoRA files: their layout, the model they were made for, their rank and the layers they touch.

The layout comes from the key grammar (lora_formats.py); the model from the families' recognisers, which read the
targets' names and shapes. A LoRA whose targets no family recognises is reported as a LoRA for an unknown model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from videosdgx.runtime.identify import Identity, KeyView, register_detector
from videosdgx.runtime.lora_formats import describe_layout, is_lora, lora_rank, parse_key

# "module:function" of each family's recogniser: (LoraTargets) -> LoraMatch | None.
RECOGNISERS = ("videosdgx.wan.lora:recognize_lora", "videosdgx.ltx2.lora_keys:recognize_lora")


@dataclass(frozen=True)
class LoraTargets:
    """A LoRA file's targets (prefix stripped, file naming) -> {"down" / "up" / "diff.<param>": shape}."""

    layout: str
    shapes: dict[str, dict[str, tuple[int, ...]]]


@dataclass(frozen=True)
class LoraMatch:
    family: str
    model: str  # e.g. "Wan2.1 T2V-1.3B"
    loader: str
    notes: tuple[str, ...] = ()


def lora_targets(shapes: dict[str, tuple[int, ...]]) -> LoraTargets:
    parsed = {key: p for key in shapes if (p := parse_key(key)) is not None}
    layouts = {p.layout for p in parsed.values()}
    layout = "kohya" if "kohya" in layouts else "diffusers" if "diffusers" in layouts else "official"
    targets: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, p in parsed.items():
        if p.kind != "alpha":
            targets.setdefault(p.target, {})["diff." + p.param if p.kind == "diff" else p.kind] = shapes[key]
    return LoraTargets(layout, targets)


def _recognisers() -> list[Callable[[LoraTargets], LoraMatch | None]]:
    found = []
    for spec in RECOGNISERS:
        module, attr = spec.split(":")
        found.append(getattr(importlib.import_module(module), attr))
    return found


@register_detector({
    "diffusion_model.blocks.0.self_attn.q.lora_A.weight": "Wan LoRA",
    "lora_unet_blocks_0_self_attn_q.lora_down.weight": "Wan LoRA (kohya)",
    "transformer.blocks.0.attn1.to_q.lora_A.weight": "Wan LoRA (diffusers)",
})
def detect_lora(view: KeyView) -> Identity | None:
    keys = list(view.shapes)
    if not is_lora(keys):
        return None
    targets = lora_targets(view.shapes)
    ranks = lora_rank(view.shapes)
    rank = "rank " + "/".join(map(str, ranks)) if ranks else "full differences only"
    for recognise in _recognisers():
        match = recognise(targets)
        if match is not None:
            return Identity(match.family, "LoRA", f"{match.model} LoRA ({rank})", describe_layout(keys),
                            match.loader, notes=match.notes)
    return Identity("unknown", "LoRA", f"LoRA for an unknown model ({rank})", describe_layout(keys),
                    "nothing in VideosDGX (no supported model has these layers)",
                    notes=(f"targets such as {', '.join(list(targets.shapes)[:3])}",))
