"""VideosDGX models inside ComfyUI's model management.

Every module our loader nodes return gets a ModelPatcher-like `ManagedWeights` and is registered with
`comfy.model_management`, so core's "Unload models" (`POST /free {"unload_models": true}` ->
`unload_all_models`) releases it, and `free_memory` can evict it, in core's order, when a core or VideosDGX model
needs room. Eviction drops the weights (`videosdgx.runtime.model_files.drop_weights`: the module object stays,
its tensors become meta) on unified memory and on CPU, where "offloading to the CPU" would free nothing; on a
discrete GPU it offloads them to the CPU as core does. `use` (at the start of every node that runs a model)
brings them back, streamed from the file with a progress bar, into the same module object the graph holds.

Only the patcher is registered. ComfyUI keeps weak references to it and to what it calls the real model (here the
patcher itself, not the module), and this file keeps the patcher alive until the module is gone and the entry has
left core's list (`forget_collected`, run by every call into this file). A module that a garbage collection frees
in the middle of one of core's loops over its list therefore never leaves a dead entry in that loop.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref

import torch
from torch import nn

from videosdgx.runtime.device import capabilities
from videosdgx.runtime.model_files import (drop_weights, reload_weights, resident_weight_bytes, weight_source,
                                           weights_dropped)

from ._comfy import byte_progress, model_management

log = logging.getLogger(__name__)

PATCHER = "_videosdgx_patcher"


def evicting_drops_weights(device: torch.device) -> bool:
    """True where moving weights off the device frees nothing: the CPU itself and unified-memory GPUs."""
    return device.type != "cuda" or capabilities(device).unified_memory


class ManagedWeights:
    """What `comfy.model_management.LoadedModel` needs of a ModelPatcher, for one VideosDGX module."""

    parent = None

    def __init__(self, module: nn.Module, title: str):
        source = weight_source(module)
        if source is None:
            raise ValueError(f"{title} was not loaded by load_model_file, so it cannot be managed")
        self._module = weakref.ref(module)
        self.title = title
        self.load_device = torch.device(source.request.device)
        self.offload_device = self.load_device if evicting_drops_weights(self.load_device) else torch.device("cpu")
        self.size = resident_weight_bytes(module)
        self.dtype = source.request.dtype

    def __repr__(self) -> str:
        return f"ManagedWeights({self.title})"

    @property
    def module(self) -> nn.Module | None:
        return self._module()

    @property
    def model(self) -> ManagedWeights:
        """What core's LoadedModel holds weakly as the real model: this patcher, which outlives its module."""
        return self

    def model_size(self) -> int:
        return self.size if self.module is not None else 0

    def loaded_size(self) -> int:
        module = self.module
        if module is None:
            return 0
        return sum(t.numel() * t.element_size() for t in module.state_dict(keep_vars=True).values()
                   if t.device.type == self.load_device.type)

    def current_loaded_device(self) -> torch.device:
        return self.load_device if self.loaded_size() else self.offload_device

    def model_dtype(self) -> torch.dtype:
        return self.dtype

    def model_patches_to(self, device_or_dtype) -> None:
        return None

    def model_patches_models(self) -> list:
        return []

    def lowvram_patch_counter(self) -> int:
        return 0

    def is_clone(self, other) -> bool:
        """As core's ModelPatcher: true for itself (core re-lists a model that is loaded again) and for patchers of
        the same module."""
        return other is self or getattr(other, "module", None) is self.module is not None

    def partially_load(self, device_to: torch.device, extra_memory: float = 0,
                       force_patch_weights: bool = False) -> int:
        """Bring every weight back (whole models only): streamed from the file, or moved back from the CPU."""
        module = self.module
        missing = self.size - self.loaded_size()
        if module is None or missing <= 0:
            return 0
        if weights_dropped(module):
            log.info("reloading %s (%.2f GB) from its file", self.title, self.size / 1e9)
            reload_weights(module, progress=byte_progress(), make_room=make_room)
        else:
            module.to(self.load_device)
        return missing

    def partially_unload(self, device_to: torch.device, memory_to_free: int = 0) -> int:
        """Nothing: a VideosDGX model leaves whole (core then calls `detach`)."""
        return 0

    def detach(self, unpatch_all: bool = True) -> nn.Module | None:
        """Release the weights (core's unload); `unpatch_all=False` (a clone being re-registered) keeps them."""
        module = self.module
        if module is None or not unpatch_all or not self.loaded_size():
            return module
        if self.offload_device == self.load_device:
            freed = drop_weights(module)
            log.info("unloaded %s: %.2f GB freed (reloaded from its file when next used)", self.title, freed / 1e9)
        else:
            module.to(self.offload_device)
            log.info("offloaded %s to %s", self.title, self.offload_device)
        return module

    def cleanup(self) -> None:
        return None


_alive: list[ManagedWeights] = []  # every patcher core may still list


def forget_collected() -> None:
    """Take the patchers of modules that no longer exist out of core's list of loaded models, and let them go."""
    dead = [p for p in _alive if p.module is None]
    if not dead:
        return
    listed = model_management.current_loaded_models
    for i in reversed(range(len(listed))):
        if any(listed[i].model is p for p in dead):
            entry = listed.pop(i)
            if entry.model_finalizer is not None:
                entry.model_finalizer.detach()
    _alive[:] = [p for p in _alive if p.module is not None]


def make_room(required: int, device: torch.device) -> None:
    """Have ComfyUI unload models (its own and ours, in its order) until `required` bytes fit on `device`."""
    forget_collected()
    model_management.free_memory(required + model_management.extra_reserved_memory(), device)


def modules_of(value) -> list[nn.Module]:
    """The loaded modules in a node payload: a module, a sequence of them, or a dataclass holding them."""
    if isinstance(value, nn.Module):
        return [value] if weight_source(value) is not None else []
    if isinstance(value, (tuple, list)):
        return [m for item in value for m in modules_of(item)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [m for field in dataclasses.fields(value) for m in modules_of(getattr(value, field.name))]
    return []


def patcher(module: nn.Module) -> ManagedWeights | None:
    return module.__dict__.get(PATCHER)


def manage(value, title: str):
    """Register the modules of a loader's output with ComfyUI's model manager; returns `value`."""
    forget_collected()
    patchers = []
    for module in modules_of(value):
        if patcher(module) is None:
            object.__setattr__(module, PATCHER, ManagedWeights(module, title))
            _alive.append(patcher(module))
        patchers.append(patcher(module))
    if patchers:
        model_management.load_models_gpu(patchers)
    return value


def use(*values, memory_required: int = 0) -> None:
    """Before a node runs models: reload any that were unloaded and have ComfyUI free `memory_required` bytes
    for the activations (unloading other models, least recently used first)."""
    forget_collected()
    patchers = [patcher(m) for value in values for m in modules_of(value) if patcher(m) is not None]
    if patchers:
        model_management.load_models_gpu(patchers, memory_required=memory_required)

