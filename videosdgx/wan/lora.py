"""LoRAs on the Wan DiT: recognising Wan LoRA files, mapping their names to ours, applying them to one expert.

Wan 2.1 LoRAs work on Wan 2.2 models where the layers match; the Wan 2.1 I2V / FLF2V image branch
(`cross_attn.k_img`, `v_img`, `norm_k_img`, `img_emb`) is skipped with one log line on models without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.lora import AppliedLora, apply_lora, load_lora_file, remove_all
from videosdgx.runtime.lora_detect import LoraMatch, LoraTargets
from videosdgx.runtime.lora_formats import LoraFile
from videosdgx.wan.keys import to_official_key
from videosdgx.wan.transformer import WanConfig, WanModel

LORA_LOADER = "the Wan LoRA Loader (VideosDGXWanLoraLoader)"
IMAGE_BRANCH_PARTS = ("k_img", "v_img", "img_emb", "add_k_proj", "add_v_proj", "norm_added_k", "image_embedder")
WIDTHS = {1536: "Wan2.1 T2V-1.3B", 3072: "Wan2.2 TI2V-5B",
          5120: "Wan 14B (Wan2.1 T2V / I2V-14B or a Wan2.2 A14B expert)"}
_BLOCK = re.compile(r"blocks[._](\d+)(?:[._](.+))?")  # a block's layer, or the block (its `modulation`)


def lora_key_map(name: str, layout: str) -> str | None:
    """A parameter name in a Wan LoRA's naming ("official" or "diffusers") -> our (official) name."""
    return to_official_key(name, "diffusers" if layout == "diffusers" else "official")


def is_image_branch(target: str) -> bool:
    """True for a target in the Wan 2.1 I2V / FLF2V CLIP image branch (absent from Wan 2.2 and T2V models), in
    any naming (official, kohya or diffusers)."""
    return any(part in target for part in IMAGE_BRANCH_PARTS)


@cache
def _module_paths() -> frozenset[str]:
    """Module paths of a one-block Wan DiT with every optional part (incl. owners of bare parameters)."""
    cfg = WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=1, in_dim=36, out_dim=16, model_type="flf2v",
                    has_image_branch=True)
    with torch.device("meta"):
        model = WanModel(cfg)
    return frozenset({n for n, _ in model.named_modules() if n} | {n.rsplit(".", 1)[0] for n, _ in
                                                                    model.named_parameters()})


@cache
def _kohya_names() -> dict[str, str]:
    """`_`-joined -> dotted paths: in-block paths without their `blocks.N.` and top-level paths."""
    names = {p.removeprefix("blocks.0.") for p in _module_paths() if not p.startswith("blocks") or
             p.startswith("blocks.0.")}
    return {n.replace(".", "_"): n for n in names}


def _official_target(target: str, layout: str) -> str | None:
    """A LoRA target in its file's naming -> our module path (None if it is not a Wan module)."""
    if layout == "kohya":
        match = _BLOCK.fullmatch(target)
        if match and match[2] is None:
            return target.replace("_", ".")
        rest = _kohya_names().get(match[2] if match else target)
        return None if rest is None else (f"blocks.{match[1]}.{rest}" if match else rest)
    name = lora_key_map(target + ".weight", layout)
    return None if name is None else name.removesuffix(".weight")


def recognize_lora(targets: LoraTargets) -> LoraMatch | None:
    """A Wan LoRA: which Wan model it fits (by width and image branch) and which layers it touches."""
    official = {}
    for target, shapes in targets.shapes.items():
        name = _official_target(target, targets.layout)
        if name is not None and (_BLOCK.fullmatch(name) or name.split(".")[0] in _top_level_modules()):
            official[name] = shapes
    in_blocks = {name: s for name, s in official.items() if (m := _BLOCK.fullmatch(name)) and m[2]}
    if not any(".self_attn." in n or ".cross_attn." in n or ".ffn." in n for n in in_blocks):
        return None
    width = _width(in_blocks)
    model = WIDTHS.get(width, f"Wan (width {width})")
    if any(is_image_branch(n) for n in official):
        model = "Wan2.1 I2V / FLF2V-14B" if width == 5120 else f"Wan I2V (width {width})"
    return LoraMatch("wan", model, LORA_LOADER, _touched(official))


def _top_level_modules() -> frozenset[str]:
    return frozenset(p.split(".")[0] for p in _module_paths() if not p.startswith("blocks"))


def _width(in_blocks: dict[str, dict[str, tuple[int, ...]]]) -> int:
    for name, shapes in in_blocks.items():
        if name.endswith("self_attn.q") and "down" in shapes:
            return shapes["down"][1]
        if name.endswith("self_attn.q") and "diff.bias" in shapes:
            return shapes["diff.bias"][0]
    return next(iter(next(iter(in_blocks.values())).values()))[-1]


def _touched(official: dict[str, dict[str, tuple[int, ...]]]) -> tuple[str, ...]:
    """Notes for `videosdgx inspect`: blocks and per-block layers touched, full differences, other layers."""
    blocks = sorted({int(m[1]) for n in official if (m := _BLOCK.fullmatch(n))})
    per_block = sorted({m[2] or "" for n in official if (m := _BLOCK.fullmatch(n))})
    low_rank = sorted({m[2] for n, s in official.items() if (m := _BLOCK.fullmatch(n)) and "down" in s})
    full = sorted({".".join(filter(None, (m[2], kind[5:]))) for n, s in official.items()
                   if (m := _BLOCK.fullmatch(n)) for kind in s if kind.startswith("diff.")})
    outside = sorted(n for n in official if not _BLOCK.fullmatch(n))
    span = f"{blocks[0]}-{blocks[-1]}" if blocks else "none"
    notes = [f"touches {len(blocks)} blocks ({span}), {len(per_block)} layers in each",
             f"low-rank: {', '.join(low_rank) or 'none'}"]
    if full:
        notes.append(f"full differences: {', '.join(full)}")
    if outside:
        notes.append(f"outside the blocks: {', '.join(outside)}")
    return tuple(notes)


def read_wan_lora(path: str | os.PathLike, dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
                  ) -> LoraFile:
    """Read a LoRA file after checking that it is a Wan LoRA. On the model's device and in its compute dtype, the
    LoRA is held once: applying it uses these very tensors."""
    return load_lora_file(path, "wan", LORA_LOADER, dtype, device)


def apply_wan_lora(model: WanModel, lora: LoraFile | str | os.PathLike, strength: float = 1.0) -> AppliedLora:
    """Apply a Wan LoRA (a file, or one read by `read_wan_lora`) to one Wan DiT (one A14B expert)."""
    lora = lora if isinstance(lora, LoraFile) else read_wan_lora(lora)
    return apply_lora(model, lora, strength, lora_key_map, skippable=is_image_branch)


EXPERTS = ("all", "high", "low")


@dataclass(frozen=True)
class ExpertLora:
    """A LoRA for a Wan model: `experts` "all", or "high" / "low" for one Wan2.2 A14B expert ("high" on a
    one-expert model is that model)."""

    lora: LoraFile
    strength: float = 1.0
    experts: str = "all"


def expert_targets(experts: Sequence[WanModel], which: str) -> list[WanModel]:
    """The experts a LoRA for `which` goes to; ConfigurationError for "low" on a one-expert model."""
    if which not in EXPERTS:
        raise ConfigurationError(f"A LoRA goes to {', '.join(EXPERTS)} expert(s), not {which!r}.")
    if which == "low" and len(experts) == 1:
        raise ConfigurationError(
            "This Wan model has a single diffusion model: a low-noise LoRA is for Wan2.2 A14B (two experts). "
            "Apply it to the model instead (--lora, or 'all' on the LoRA loader)."
        )
    return list(experts) if which == "all" else [experts[0] if which == "high" else experts[-1]]


def apply_expert_loras(experts: Sequence[WanModel], loras: Sequence[ExpertLora]) -> list[AppliedLora]:
    """Apply each LoRA to its expert(s); on an error, the LoRAs applied so far are removed again."""
    applied: list[AppliedLora] = []
    try:
        for item in loras:
            for model in expert_targets(experts, item.experts):
                applied.append(apply_wan_lora(model, item.lora, item.strength))
    except BaseException:
        remove_all(reversed(applied))
        raise
    return applied


@contextmanager
def expert_loras_applied(experts: Sequence[WanModel], loras: Sequence[ExpertLora]) -> Iterator[None]:
    """The LoRAs applied for the duration of the block (one sampling run), removed exactly afterwards."""
    applied = apply_expert_loras(experts, loras)
    try:
        yield
    finally:
        remove_all(reversed(applied))
