"""Applying LoRAs to a loaded model without a second full-precision copy of it.

Two mechanisms, chosen per parameter:

  * The weight of a Linear (`nn.Linear` or `QuantizedLinear`, any storage dtype) gets a runtime term: the layer's
    output gains `strength * scale * (x @ down.T) @ up.T` (or `x @ diff.T` for a full weight difference), through a
    forward hook; `dense_weight` adds the same delta for code that runs the layer's matmul itself. The stored
    weight is never touched, so fp8 / NVFP4 weights keep their exact values and removing a LoRA is exact.
  * Every other parameter a LoRA changes (biases, norm scales, modulation tables, a conv kernel) is small: it is
    updated in place as `original + sum(strength_i * delta_i)` from a copy of its original, so removal and
    strength changes are exact too.

A family supplies `key_map(name, layout) -> model parameter name | None`, mapping a parameter name in the LoRA
file's naming ("official" or "diffusers"; kohya names are matched against the model's own names) to the model's.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.errors import CheckpointError, WrongComponentError
from videosdgx.families import family_ids, family_title
from videosdgx.runtime.identify import Identity, identify
from videosdgx.runtime.lora_formats import LoraFile, LoraLayer, read_lora
from videosdgx.runtime.quantized_linear import QuantizedLinear, compute_dtype

log = logging.getLogger(__name__)

KeyMap = Callable[[str, str], "str | None"]
PATCH_ATTR = "lora_patch"


def check_lora_file(checkpoint: Checkpoint, family: str, loader: str) -> Identity:
    """The identity of an opened LoRA file; WrongComponentError for a model file or a LoRA for another family."""
    identity = identify(checkpoint)
    family_name = family_title(family)
    if identity.component != "LoRA":
        raise WrongComponentError(
            f"{checkpoint.name} is a {identity.description} ({family_title(identity.family)}), not a LoRA; load it "
            f"with {identity.loader}. {loader[0].upper() + loader[1:]} takes {family_name} LoRA files from the "
            "loras folder."
        )
    if identity.family != family:
        where = ("" if identity.family not in family_ids() else f"Load it with {identity.loader}, or choose "
                 f"a {family_name} LoRA.")
        raise WrongComponentError(
            f"{checkpoint.name} is a {identity.variant}, not a {family_name} LoRA: it cannot be applied to a "
            f"{family_name} model. {where or f'Choose a {family_name} LoRA.'}"
        )
    return identity


def load_lora_file(path: str | os.PathLike, family: str, loader: str, dtype: torch.dtype | None = None,
                   device: torch.device | str = "cpu") -> LoraFile:
    """Read a LoRA file (onto `device`, in `dtype`: default the stored one) after `check_lora_file`."""
    with open_checkpoint(path) as checkpoint:
        identity = check_lora_file(checkpoint, family, loader)
        return replace(read_lora(checkpoint, dtype, device), made_for=identity.variant)


def identity_key_map(name: str, layout: str) -> str | None:
    """Key map of a family whose model uses the file's names unchanged."""
    return name


@dataclass
class _Term:
    """One LoRA's contribution to one Linear weight: `strength * scale * up @ down`, or `strength * full`."""

    owner: int
    strength: float
    scale: float
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    full: torch.Tensor | None = None

    def add_to(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`output + strength * scale * (x @ down.T @ up.T)` (or `x @ full.T`), accumulated into `output`."""
        x = x.to(self.up.dtype if self.full is None else self.full.dtype)
        y = F.linear(x, self.full) if self.full is not None else F.linear(F.linear(x, self.down), self.up)
        return output.add_(y.to(output.dtype), alpha=self.strength * self.scale)

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        delta = self.full.to(dtype) if self.full is not None else self.up.to(dtype) @ self.down.to(dtype)
        return delta * (self.strength * self.scale)


class LinearPatch:
    """The LoRA terms of one Linear (kept as `layer.lora_patch`) and the forward hook that adds them."""

    def __init__(self, layer: nn.Module):
        self.terms: list[_Term] = []
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        for term in self.terms:
            if term.strength != 0:
                output = term.add_to(output, inputs[0])
        return output

    def dense_delta(self, dtype: torch.dtype) -> torch.Tensor | None:
        """Sum of the terms as a dense [out, in] `dtype` tensor (a temporary), or None without active terms."""
        deltas = [term.dense(dtype) for term in self.terms if term.strength != 0]
        return sum(deltas[1:], deltas[0]) if deltas else None


@dataclass
class _ParamPatch:
    """The original value of an in-place patched parameter and the deltas on it: (owner, strength, delta)."""

    original: torch.Tensor
    deltas: list[tuple[int, float, torch.Tensor]] = field(default_factory=list)

    def write(self, param: torch.Tensor) -> None:
        value = self.original.float()
        for _, strength, delta in self.deltas:
            if strength != 0:
                value = value + strength * delta.float()
        param.data.copy_(value.to(param.dtype))


@dataclass
class AppliedLora:
    """One LoRA applied to one model: change its strength or remove it; both are exact."""

    model: nn.Module
    name: str
    strength: float
    owner: int
    linears: list[nn.Module]
    params: list[str]

    def set_strength(self, strength: float) -> None:
        self.strength = strength
        for layer in self.linears:
            for term in getattr(layer, PATCH_ATTR).terms:
                if term.owner == self.owner:
                    term.strength = strength
        patches = _param_patches(self.model)
        for name in self.params:
            patch = patches[name]
            patch.deltas = [(o, strength if o == self.owner else s, d) for o, s, d in patch.deltas]
            patch.write(self.model.get_parameter(name))

    def remove(self) -> None:
        for layer in self.linears:
            patch: LinearPatch = getattr(layer, PATCH_ATTR)
            patch.terms = [t for t in patch.terms if t.owner != self.owner]
            if not patch.terms:
                patch.handle.remove()
                delattr(layer, PATCH_ATTR)
        patches = _param_patches(self.model)
        for name in self.params:
            patch = patches[name]
            patch.deltas = [d for d in patch.deltas if d[0] != self.owner]
            patch.write(self.model.get_parameter(name))
            if not patch.deltas:
                del patches[name]
        self.linears, self.params = [], []


def _param_patches(model: nn.Module) -> dict[str, _ParamPatch]:
    if not hasattr(model, "_lora_param_patches"):
        model._lora_param_patches = {}
    return model._lora_param_patches


_owners = itertools.count(1)


def _kohya_names(model: nn.Module) -> dict[str, str]:
    """`blocks_0_self_attn_q` -> `blocks.0.self_attn.q` for every module of the model."""
    return {name.replace(".", "_"): name for name, _ in model.named_modules() if name}


def resolve(model: nn.Module, lora: LoraFile, key_map: KeyMap) -> tuple[dict[str, tuple[str, LoraLayer]], list[str]]:
    """Model module path for each LoRA target: ({target: (module path, layer)}, [targets the model lacks])."""
    params = dict(model.named_parameters())
    kohya = _kohya_names(model) if lora.layout == "kohya" else {}
    found, missing = {}, []
    for target, layer in lora.layers.items():
        attr = "weight" if layer.down is not None else next(iter(layer.diffs))
        if lora.layout == "kohya":
            module = kohya.get(target)
            name = None if module is None else f"{module}.{attr}"
        else:
            name = key_map(f"{target}.{attr}", lora.layout)
        if name is None or name not in params:
            missing.append(target)
            continue
        found[target] = (name.rsplit(".", 1)[0], layer)
    return found, missing


def apply_lora(
    model: nn.Module,
    lora: LoraFile,
    strength: float = 1.0,
    key_map: KeyMap = identity_key_map,
    skippable: Callable[[str], bool] = lambda target: False,
) -> AppliedLora:
    """Apply `lora` to `model` (already on its device and dtype) at `strength`; several LoRAs stack.

    Targets the model lacks are skipped: those `skippable(target)` accepts (e.g. an image branch the model does
    not have) with one log line, others with a warning; CheckpointError if the LoRA touches nothing of the model,
    WrongComponentError if a layer's shape does not fit (a LoRA for another model size).
    """
    found, missing = resolve(model, lora, key_map)
    if not found:
        raise CheckpointError(
            f"{lora.source} changes no layer of this model (its targets, e.g. {', '.join(missing[:3])}, do not "
            "exist here): it is a LoRA for another model. Choose a LoRA made for this model."
        )
    expected = [t for t in missing if skippable(t)]
    if expected:
        log.info("%s: skipping %d layers this model does not have (e.g. %s)", lora.source, len(expected), expected[0])
    unexpected = [t for t in missing if not skippable(t)]
    if unexpected:
        log.warning("%s: %d of its layers are not in this model and are ignored (e.g. %s)",
                    lora.source, len(unexpected), ", ".join(unexpected[:3]))
    owner = next(_owners)
    applied = AppliedLora(model, lora.source, strength, owner, [], [])
    for target, (module_name, layer) in found.items():
        module = model.get_submodule(module_name)
        _check_shapes(lora, target, module, layer)
        if layer.down is not None and "weight" in layer.diffs:
            raise CheckpointError(f"{lora.source}: {target} has both a low-rank pair and a full weight difference; "
                                  "the file is damaged.")
        if layer.down is not None or "weight" in layer.diffs:
            if isinstance(module, (nn.Linear, QuantizedLinear)):
                _add_linear_term(module, layer, owner, strength)
                applied.linears.append(module)
            else:
                _add_param_delta(model, f"{module_name}.weight", _dense_weight_delta(layer, module.weight), owner,
                                 strength)
                applied.params.append(f"{module_name}.weight")
        for attr, diff in layer.diffs.items():
            if attr != "weight":
                _add_param_delta(model, f"{module_name}.{attr}", diff, owner, strength)
                applied.params.append(f"{module_name}.{attr}")
    log.info("applied %s at strength %g: %d Linear layers, %d other tensors", lora.source, strength,
             len(applied.linears), len(applied.params))
    return applied


def _dense_weight_delta(layer: LoraLayer, weight: torch.Tensor) -> torch.Tensor:
    """Full delta of a non-Linear weight (a conv kernel) from a low-rank pair or a full difference."""
    if layer.down is None:
        return layer.diffs["weight"]
    delta = layer.up.flatten(1).float() @ layer.down.flatten(1).float()
    return (delta * layer.scale).reshape(weight.shape)


def _add_linear_term(layer: nn.Module, lora_layer: LoraLayer, owner: int, strength: float) -> None:
    """A runtime term in the layer's compute dtype (the LoRA's own for a bias-less quantised layer)."""
    dtype, device = compute_dtype(layer), layer.weight.device
    if dtype.itemsize == 1:
        dtype = (lora_layer.down if lora_layer.down is not None else lora_layer.diffs["weight"]).dtype
    patch = getattr(layer, PATCH_ATTR, None)
    if patch is None:
        patch = LinearPatch(layer)
        setattr(layer, PATCH_ATTR, patch)
    if lora_layer.down is not None:
        term = _Term(owner, strength, lora_layer.scale, down=lora_layer.down.to(device, dtype),
                     up=lora_layer.up.to(device, dtype))
    else:
        term = _Term(owner, strength, 1.0, full=lora_layer.diffs["weight"].to(device, dtype))
    patch.terms.append(term)


def _add_param_delta(model: nn.Module, name: str, delta: torch.Tensor, owner: int, strength: float) -> None:
    param = model.get_parameter(name)
    patches = _param_patches(model)
    if name not in patches:
        patches[name] = _ParamPatch(param.detach().clone())
    patch = patches[name]
    patch.deltas.append((owner, strength, delta.to(param.device, torch.float32).reshape(param.shape)))
    patch.write(param)


def _module_shape(module: nn.Module) -> tuple[int, ...]:
    if isinstance(module, (nn.Linear, QuantizedLinear)):
        return (module.out_features, module.in_features)
    return tuple(module.weight.shape)


def _check_shapes(lora: LoraFile, target: str, module: nn.Module, layer: LoraLayer) -> None:
    """WrongComponentError when a LoRA layer does not fit the model's (a LoRA for another model size)."""
    problems = []
    if layer.down is not None:
        shape = _module_shape(module)
        lora_shape = (layer.up.shape[0], *layer.down.shape[1:])
        if (lora_shape[0], torch.Size(lora_shape[1:]).numel()) != (shape[0], torch.Size(shape[1:]).numel()):
            problems.append(f"low-rank pair of shape {list(lora_shape)} for a layer of shape {list(shape)}")
    for attr, diff in layer.diffs.items():
        param = module.weight if attr == "weight" else getattr(module, attr, None)
        if attr == "weight" and isinstance(module, QuantizedLinear):
            expected = (module.out_features, module.in_features)
        else:
            expected = None if param is None else tuple(param.shape)
        if expected is None or diff.numel() != torch.Size(expected).numel():
            problems.append(f"{attr} difference of shape {list(diff.shape)} for a {attr} of shape "
                            f"{list(expected) if expected else 'none'}")
    if problems:
        what = f" is a {lora.made_for} and" if lora.made_for else ""
        raise WrongComponentError(
            f"{lora.source}{what} does not fit this model at {target}: {problems[0]}. It is a LoRA for another "
            "model size; choose a LoRA made for this model."
        )


def remove_all(applied: Iterable[AppliedLora]) -> None:
    """Remove each applied LoRA (exactly; order does not matter)."""
    for lora in applied:
        lora.remove()
