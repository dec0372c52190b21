"""Reading LoRA files in the layouts people have, into one form: per target layer, a low-rank pair and / or
full-difference tensors.

Layouts (key = prefix + target + suffix; the target is the adapted module's path in the file's naming):

  * kohya / ComfyUI: `lora_unet_<path with _>.lora_down.weight`, `.lora_up.weight`, `.alpha`
    (musubi-tuner writes Wan LoRAs this way).
  * official / musubi / ComfyUI: `diffusion_model.<path>.lora_A.weight`, `.lora_B.weight` (or lora_down / lora_up),
    optional `.alpha`; also without a prefix or under `model.diffusion_model.`.
  * lightx2v (and Kijai's conversions): the same, plus full differences `<path>.diff` (weight), `<path>.diff_b`
    (bias) and `<block>.diff_m` (the block's `modulation`).
  * diffusers / PEFT: `transformer.<diffusers path>.lora_A.weight`, `.lora_B.weight`, `.lora_B.bias` (a bias
    difference); the alpha is in the safetensors metadata `lora_adapter_metadata` (`transformer.lora_alpha`,
    `transformer.r`), else alpha = rank.

A low-rank pair adds `strength * alpha / rank * up @ down` to the weight (alpha absent: scale 1), as kohya,
ComfyUI, PEFT and the lightx2v loaders do. Key names checked against diffusers 0.42
`_convert_non_diffusers_wan_lora_to_diffusers` / `_convert_musubi_wan_lora_to_diffusers`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import torch

from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.runtime.errors import CheckpointError

log = logging.getLogger(__name__)

KOHYA_PREFIX = "lora_unet_"
# Longest first: a key takes the first prefix it starts with.
PREFIXES = (("model.diffusion_model.", "official"), ("diffusion_model.", "official"),
            ("base_model.model.", "diffusers"), ("transformer.", "diffusers"), (KOHYA_PREFIX, "kohya"))
# key suffix -> (kind, parameter of the target it changes)
SUFFIXES = {
    ".lora_A.weight": ("down", "weight"),
    ".lora_down.weight": ("down", "weight"),
    ".lora_B.weight": ("up", "weight"),
    ".lora_up.weight": ("up", "weight"),
    ".lora_B.bias": ("diff", "bias"),
    ".alpha": ("alpha", "weight"),
    ".diff": ("diff", "weight"),
    ".diff_b": ("diff", "bias"),
    ".diff_m": ("diff", "modulation"),
}
UNSUPPORTED = {".dora_scale": "DoRA", ".lora_mid.weight": "LoCon (LyCORIS)", ".hada_w1_a": "LoHa (LyCORIS)",
               ".lokr_w1": "LoKr (LyCORIS)"}
PEFT_METADATA = "lora_adapter_metadata"
FIX_HINT = "Download the LoRA again, or use a LoRA in the kohya, ComfyUI, diffusers or lightx2v layout."


@dataclass(frozen=True)
class LoraKey:
    """One parsed key: `target` module path (prefix stripped; `_`-joined for kohya), kind and parameter."""

    layout: str  # "official", "diffusers" or "kohya"
    target: str
    kind: str  # "down", "up", "alpha" or "diff"
    param: str


def parse_key(key: str) -> LoraKey | None:
    """The parsed LoRA key, or None if `key` is not in any LoRA grammar VideosDGX reads."""
    layout, rest = "official", key
    for prefix, name in PREFIXES:
        if key.startswith(prefix):
            layout, rest = name, key[len(prefix):]
            break
    for suffix, (kind, param) in SUFFIXES.items():
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return LoraKey(layout, rest[: -len(suffix)], kind, param)
    return None


def is_lora(keys: list[str]) -> bool:
    """True when every key is a LoRA key (or one of an unsupported LoRA variant, refused when read) and at least
    one is a low-rank factor or a full difference."""
    parsed = [parse_key(k) for k in keys if not k.endswith(tuple(UNSUPPORTED))]
    return bool(parsed) and all(parsed) and any(p.kind in ("down", "up", "diff") for p in parsed)


@dataclass
class LoraLayer:
    """The changes to one module: `up @ down * scale` on its weight, and full differences by parameter name."""

    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None
    diffs: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def rank(self) -> int | None:
        return None if self.down is None else self.down.shape[0]

    @property
    def scale(self) -> float:
        """alpha / rank, or 1 without an alpha."""
        return 1.0 if self.alpha is None or self.down is None else self.alpha / self.down.shape[0]


@dataclass
class LoraFile:
    """A LoRA file read into per-target changes. `layout` decides how targets map to a model's names."""

    source: str
    layout: str
    layers: dict[str, LoraLayer]
    description: str
    made_for: str = ""  # what identification says it is, e.g. "Wan2.1 T2V-1.3B LoRA (rank 32)"


def describe_layout(keys: list[str]) -> str:
    """Human name of the layout of a set of LoRA keys (for `videosdgx inspect`)."""
    parsed = [p for p in map(parse_key, keys) if p is not None]
    layouts = {p.layout for p in parsed}
    pair = "lora_down/lora_up" if any(".lora_down." in k or ".lora_up." in k for k in keys) else "lora_A/lora_B"
    if "kohya" in layouts:
        name = f"kohya / ComfyUI (lora_unet_, {pair})"
    elif "diffusers" in layouts:
        name = f"diffusers / PEFT (transformer., {pair})"
    elif any(k.startswith(("diffusion_model.", "model.diffusion_model.")) for k in keys):
        name = f"ComfyUI / official / musubi (diffusion_model., {pair})"
    else:
        name = f"official names without prefix ({pair})"
    full = sorted({k.rsplit(".", 1)[-1] for k in keys if k.endswith((".diff", ".diff_b", ".diff_m"))})
    if full:
        name += f", full differences ({', '.join(full)}: lightx2v style)"
    return name


def _peft_alpha(metadata: dict[str, str]) -> float | None:
    """diffusers' `lora_adapter_metadata`: alpha / rank folded into one alpha per rank (None if absent)."""
    raw = metadata.get(PEFT_METADATA)
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError:
        return None
    alpha = next((v for k, v in config.items() if k.endswith("lora_alpha")), None)
    return None if alpha is None else float(alpha)


def read_lora(checkpoint: Checkpoint, dtype: torch.dtype | None = None, device: torch.device | str = "cpu"
              ) -> LoraFile:
    """Every LoRA tensor of `checkpoint` (on `device`, in `dtype`: default the stored one), grouped by target;
    CheckpointError for damaged or foreign files."""
    keys = checkpoint.keys()
    for key in keys:
        for suffix, kind in UNSUPPORTED.items():
            if key.endswith(suffix):
                raise CheckpointError(f"{checkpoint.name} is a {kind} file ({key}); VideosDGX loads plain LoRAs "
                                      "(low-rank pairs and full differences). Use a LoRA version of it.")
    parsed = {key: parse_key(key) for key in keys}
    unknown = [k for k, p in parsed.items() if p is None]
    if unknown or not is_lora(keys):
        sample = ", ".join((unknown or keys)[:3]) or "no tensors"
        raise CheckpointError(
            f"{checkpoint.name} is not a LoRA VideosDGX reads (keys such as {sample} are not lora_A/lora_B, "
            f"lora_down/lora_up, alpha, diff, diff_b or diff_m keys). {FIX_HINT}"
        )
    peft_alpha = _peft_alpha(checkpoint.metadata)
    layers: dict[str, LoraLayer] = {}
    for key, p in parsed.items():
        layer = layers.setdefault(p.target, LoraLayer())
        stored = checkpoint.get(key)
        tensor = stored.to(device, dtype or stored.dtype, copy=True)
        if p.kind == "alpha":
            layer.alpha = float(tensor.float().reshape(-1)[0])
        elif p.kind == "diff":
            layer.diffs[p.param] = tensor
        else:
            setattr(layer, p.kind, tensor)
    for target, layer in layers.items():
        _check_pair(checkpoint.name, target, layer)
        if layer.alpha is None and peft_alpha is not None and layer.down is not None:
            layer.alpha = peft_alpha
    layouts = {p.layout for p in parsed.values()}
    layout = "kohya" if "kohya" in layouts else "diffusers" if "diffusers" in layouts else "official"
    return LoraFile(checkpoint.name, layout, layers, describe_layout(keys))


def _check_pair(source: str, target: str, layer: LoraLayer) -> None:
    if (layer.down is None) != (layer.up is None):
        have, missing = ("down", "up") if layer.up is None else ("up", "down")
        raise CheckpointError(f"{source}: {target} has a lora_{have} but no lora_{missing} tensor; the file is "
                              f"incomplete. {FIX_HINT}")
    if layer.down is None:
        return
    if layer.down.ndim < 2 or layer.up.ndim < 2 or layer.up.shape[1] != layer.down.shape[0]:
        raise CheckpointError(
            f"{source}: {target} has lora_down {list(layer.down.shape)} and lora_up {list(layer.up.shape)}, whose "
            f"ranks differ ({layer.down.shape[0] if layer.down.ndim else '?'} vs "
            f"{layer.up.shape[1] if layer.up.ndim > 1 else '?'}); the file is damaged. {FIX_HINT}"
        )


def lora_rank(shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Distinct ranks of the low-rank pairs in a file, from the shapes of its down factors."""
    ranks = {shape[0] for key, shape in shapes.items()
             if (p := parse_key(key)) is not None and p.kind == "down" and shape}
    return tuple(sorted(ranks))
