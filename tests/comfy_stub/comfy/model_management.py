"""Stand-in for comfy.model_management: device helpers, the interrupt flag, and the model manager.

The model manager follows ComfyUI a125cd84 comfy/model_management.py: `LoadedModel` wraps a ModelPatcher-like
object (weakly), `current_loaded_models` is most recently loaded first, `load_models_gpu` frees room and loads,
`free_memory` unloads models (partially first, via `model_unload(memory_to_free)`) until enough is free,
`unload_all_models` is what `POST /free {"unload_models": true}` runs. Free memory is `memory_budget` (a test sets
it; default: plenty) minus what the registered models hold; the device is the CPU, on which core's
`load_models_gpu` never frees room itself (callers use `free_memory`).
"""

import gc
import sys
import weakref

import torch


class InterruptProcessingException(Exception):
    pass


interrupt_requested = False


def interrupt_current_processing(value=True):
    global interrupt_requested
    interrupt_requested = value


def throw_exception_if_processing_interrupted():
    global interrupt_requested
    if interrupt_requested:
        interrupt_requested = False
        raise InterruptProcessingException()


def get_torch_device():
    return torch.device("cpu")


def intermediate_device():
    return torch.device("cpu")


def soft_empty_cache(force=False):
    return None


EXTRA_RESERVED_VRAM = 400 * 1024 * 1024
memory_budget = 1 << 50
current_loaded_models = []


def get_free_memory(dev=None, torch_free_too=False):
    free = memory_budget - sum(m.model_loaded_memory() for m in current_loaded_models if m.model is not None)
    return (free, free) if torch_free_too else free


def extra_reserved_memory():
    return EXTRA_RESERVED_VRAM


def minimum_inference_memory():
    return (1024 * 1024 * 1024) * 0.8 + extra_reserved_memory()


class LoadedModel:
    def __init__(self, model):
        self._model = weakref.ref(model)
        self.device = model.load_device
        self.real_model = None
        self.currently_used = True
        self.model_finalizer = None

    @property
    def model(self):
        return self._model()

    def model_memory(self):
        return self.model.model_size()

    def model_loaded_memory(self):
        return self.model.loaded_size()

    def model_offloaded_memory(self):
        return self.model.model_size() - self.model.loaded_size()

    def model_memory_required(self, device):
        if device == self.model.current_loaded_device():
            return self.model_offloaded_memory()
        return self.model_memory()

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        self.model.model_patches_to(self.device)
        self.model.model_patches_to(self.model.model_dtype())
        self.model.partially_load(self.device, lowvram_model_memory or 1e32, force_patch_weights=force_patch_weights)
        real_model = self.model.model
        self.real_model = weakref.ref(real_model)
        self.model_finalizer = weakref.finalize(real_model, cleanup_models)
        return real_model

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        if memory_to_free is not None and memory_to_free < self.model.loaded_size():
            freed = self.model.partially_unload(self.model.offload_device, memory_to_free)
            if freed >= memory_to_free:
                return False
        self.model.detach(unpatch_weights)
        self.model_finalizer.detach()
        self.model_finalizer = None
        self.real_model = None
        return True

    def __eq__(self, other):
        return self.model is other.model

    def is_dead(self):
        return self.real_model() is not None and self.model is None


def free_memory(memory_required, device, keep_loaded=[]):
    cleanup_models_gc()
    can_unload, unloaded = [], []
    for i in range(len(current_loaded_models) - 1, -1, -1):
        shift_model = current_loaded_models[i]
        if shift_model.device == device and shift_model not in keep_loaded and not shift_model.is_dead():
            can_unload.append((-shift_model.model_offloaded_memory(), sys.getrefcount(shift_model.model),
                               shift_model.model_memory(), i))
            shift_model.currently_used = False
    for x in sorted(can_unload):
        i = x[-1]
        free_mem = get_free_memory(device)
        if free_mem > memory_required:
            break
        if current_loaded_models[i].model_unload(memory_required - free_mem):
            unloaded.append(i)
    return [current_loaded_models.pop(i) for i in sorted(unloaded, reverse=True)]


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    cleanup_models_gc()
    extra_mem = max(minimum_inference_memory(), memory_required + extra_reserved_memory())
    models = {m for x in models for m in (x, *x.model_patches_models())}
    models_to_load = []
    for x in models:
        loaded_model = LoadedModel(x)
        if loaded_model in current_loaded_models:
            loaded = current_loaded_models[current_loaded_models.index(loaded_model)]
            loaded.currently_used = True
            models_to_load.append(loaded)
        else:
            models_to_load.append(loaded_model)
    for loaded_model in models_to_load:
        for i in [i for i, m in enumerate(current_loaded_models) if loaded_model.model.is_clone(m.model)][::-1]:
            unloaded = current_loaded_models.pop(i)
            unloaded.model.detach(unpatch_all=False)
            unloaded.model_finalizer.detach()
    total = {}
    for loaded_model in models_to_load:
        total[loaded_model.device] = total.get(loaded_model.device, 0) + loaded_model.model_memory_required(
            loaded_model.device)
    for device in total:
        if device != torch.device("cpu"):
            free_memory(total[device] * 1.1 + extra_mem, device)
    for loaded_model in models_to_load:
        loaded_model.model_load(0, force_patch_weights=force_patch_weights)
        current_loaded_models.insert(0, loaded_model)


def load_model_gpu(model):
    return load_models_gpu([model])


def loaded_models(only_currently_used=False):
    return [m.model for m in current_loaded_models if m.currently_used or not only_currently_used]


def cleanup_models_gc():
    if any(m.is_dead() for m in current_loaded_models):
        gc.collect()


def cleanup_models():
    for i in [i for i, m in enumerate(current_loaded_models) if m.real_model() is None][::-1]:
        current_loaded_models.pop(i)


def unload_all_models():
    free_memory(1e30, get_torch_device())
