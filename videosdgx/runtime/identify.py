"""Checkpoint identification: tell what a model file is from its tensor names and shapes alone.

Each model family registers detectors (functions from a `KeyView` to an `Identity` or None). Every loader
identifies its file first, so a wrong file gets "this is a Wan 2.1 VAE; load it with the Wan VAE loader" instead
of a stack trace deep inside `load_state_dict`.
"""

from __future__ import annotations

import difflib
import importlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch

from videosdgx.families import detector_modules, family_ids, family_title
from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.runtime.errors import CheckpointError, WrongComponentError

NON_WEIGHT_KEYS = {"spiece_model", "scaled_fp8"}  # an embedded tokenizer and ComfyUI's fp8 marker
# Quantisation scales stored beside their weights (ComfyUI scaled fp8, LTX fp8 / NVFP4): not parameters.
SCALE_SUFFIXES = (".scale_weight", ".scale_input", ".weight_scale", ".weight_scale_2", ".input_scale")
LORA_DETECTOR = "videosdgx.runtime.lora_detect"  # LoRAs of every family: first, before the model detectors


@dataclass(frozen=True)
class Identity:
    """What a checkpoint is. `loader` is the node / CLI option that loads it."""

    family: str
    component: str
    variant: str
    layout: str
    loader: str
    dtype: str = ""
    quantization: str = "none"
    parameters: int = 0
    nbytes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def description(self) -> str:
        return f"{self.variant} {self.component}"

    def summary(self) -> str:
        quant = "" if self.quantization == "none" else f", {self.quantization}"
        return (
            f"{self.description} [{family_title(self.family)}], layout {self.layout}, "
            f"{self.dtype}{quant}, {self.parameters / 1e9:.3g}B parameters, {self.nbytes / 1e9:.2f} GB"
        )


class KeyView:
    """Tensor names, shapes and dtypes of a checkpoint with an optional prefix stripped."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, torch.dtype]):
        self.shapes = shapes
        self.dtypes = dtypes

    def __contains__(self, key: str) -> bool:
        return key in self.shapes

    def shape(self, key: str) -> tuple[int, ...]:
        return self.shapes[key]

    def count_prefix(self, prefix: str) -> int:
        return sum(1 for k in self.shapes if k.startswith(prefix))

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.shapes)

    def indices(self, prefix: str) -> set[int]:
        """Distinct integers N in keys `prefix` + `N.` (e.g. the block indices under `blocks.`)."""
        found = set()
        for key in self.shapes:
            if key.startswith(prefix):
                head = key[len(prefix):].split(".", 1)[0]
                if head.isdigit():
                    found.add(int(head))
        return found

    def strip(self, prefix: str) -> "KeyView":
        """The view with `prefix` removed from the keys that carry it (other keys dropped)."""
        n = len(prefix)
        return KeyView({k[n:]: v for k, v in self.shapes.items() if k.startswith(prefix)},
                       {k[n:]: v for k, v in self.dtypes.items() if k.startswith(prefix)})


Detector = Callable[[KeyView], "Identity | None"]
_DETECTORS: list[Detector] = []
_MARKERS: dict[str, str] = {}


def register_detector(markers: dict[str, str]) -> Callable[[Detector], Detector]:
    """Register a detector; `markers` maps a characteristic key to what it marks (used for 'closest match')."""

    def wrap(fn: Detector) -> Detector:
        _DETECTORS.append(fn)
        _MARKERS.update(markers)
        return fn

    return wrap


def _load_detectors() -> None:
    for name in (LORA_DETECTOR, *detector_modules()):
        importlib.import_module(name)


def describe_dtypes(dtypes: dict[str, torch.dtype], shapes: dict[str, tuple[int, ...]]) -> tuple[str, str]:
    """(main dtype by bytes, quantization scheme) of a set of tensors."""
    by_bytes: Counter[torch.dtype] = Counter()
    for key, dtype in dtypes.items():
        if key not in NON_WEIGHT_KEYS:
            by_bytes[dtype] += _numel(shapes[key]) * dtype.itemsize
    main = str(by_bytes.most_common(1)[0][0]).replace("torch.", "") if by_bytes else "empty"
    keys = dtypes.keys()
    has_fp8 = any(d in (torch.float8_e4m3fn, torch.float8_e5m2) for d in dtypes.values())
    if "scaled_fp8" in keys or any(k.endswith(".scale_weight") for k in keys):
        quant = "fp8 scaled (ComfyUI)"
    elif any(k.endswith(".weight_scale_2") for k in keys) or (
        any(k.endswith(".weight_scale") for k in keys) and any(d == torch.uint8 for k, d in dtypes.items()
                                                                if k.endswith(".weight"))
    ):
        quant = "nvfp4"
    elif any(d == torch.int8 for k, d in dtypes.items() if k.endswith(".weight")):
        quant = "int8 (weight_scale)"
    elif has_fp8 and any(k.endswith(".weight_scale") for k in keys):
        quant = "fp8 (per-tensor weight_scale)"
    elif has_fp8:
        quant = "fp8 (unscaled cast)"
    else:
        quant = "none"
    return main, quant


def identify_keys(shapes: dict[str, tuple[int, ...]], dtypes: dict[str, torch.dtype], source: str = "") -> Identity:
    """Identify a model from its key names, shapes and dtypes. Raises `CheckpointError` for unknown layouts."""
    _load_detectors()
    view = KeyView(shapes, dtypes)
    for detect in _DETECTORS:
        found = detect(view)
        if found is not None:
            main, quant = describe_dtypes(dtypes, shapes)
            params = sum(_numel(s) * (2 if dtypes[k] == torch.uint8 else 1)  # uint8 weights pack two fp4 values
                         for k, s in shapes.items() if k not in NON_WEIGHT_KEYS and not k.endswith(SCALE_SUFFIXES))
            nbytes = sum(_numel(shapes[k]) * dtypes[k].itemsize for k in shapes)
            return Identity(**{**found.__dict__, "dtype": main, "quantization": quant, "parameters": params,
                               "nbytes": nbytes})
    raise CheckpointError(unknown_layout_message(list(shapes), source))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def unknown_layout_message(keys: list[str], source: str) -> str:
    """Explain an unknown file: a few of its keys and the closest key VideosDGX knows."""
    best: tuple[float, str, str] = (0.0, "", "")
    for key in keys[:2000]:
        for marker in difflib.get_close_matches(key, list(_MARKERS), n=1, cutoff=0.6):
            score = difflib.SequenceMatcher(None, key, marker).ratio()
            if score > best[0]:
                best = (score, key, marker)
    sample = ", ".join(keys[:4]) if keys else "no tensors at all"
    message = f"{source or 'This file'} is not a model VideosDGX knows (its keys start: {sample})."
    if best[1]:
        message += f" Closest match: its key '{best[1]}' resembles '{best[2]}' of a {_MARKERS[best[2]]}."
    return message + " Check that you downloaded the file listed in model_manifest.yaml."


def identify(checkpoint: Checkpoint) -> Identity:
    """Identify an opened checkpoint."""
    return identify_keys(checkpoint.shapes(), checkpoint.dtypes(), checkpoint.name)


def expect(identity: Identity, family: str, component: str, source: str, loader: str) -> None:
    """Refuse a file that is not the `family` `component` a loader expects, saying which loader to use."""
    if identity.family == family and identity.component == component:
        return
    wanted = component if family not in family_ids() else f"{family_title(family)} {component}"
    found = family_title(identity.family)
    found = identity.description if identity.family not in family_ids() else f"{identity.description} ({found})"
    raise WrongComponentError(
        f"{source} is a {found}, not a {wanted}; load it with {identity.loader}. "
        f"{loader[0].upper() + loader[1:]} needs a {wanted} file."
    )
