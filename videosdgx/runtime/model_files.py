"""The one path every loader takes: open, identify, refuse the wrong file, build on meta, check memory, stream in.

A loaded module remembers where its weights came from (`WeightSource`), so a memory manager can drop them
(`drop_weights`: the module stays, its tensors become meta) and stream them back later (`reload_weights`), with
the same dtype, device and weight format, into the same module object that every holder already references.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.identify import Identity, expect, identify
from videosdgx.runtime.checkpoint import resolve_checkpoint_files
from videosdgx.runtime.loading import KeyMap, Progress, load_module, map_checkpoint_keys, set_tensor
from videosdgx.runtime.memory import check_memory

log = logging.getLogger(__name__)

MakeRoom = Callable[[int, torch.device], None]  # (weight bytes about to be loaded, device)
FP8_FORMATS = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


@dataclass(frozen=True)
class LoadRequest:
    """How to load: compute dtype, device, and an optional weight format to convert to ("default" keeps files')."""

    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    weight_format: str = "default"
    progress: Progress | None = None
    make_room: MakeRoom | None = None  # lets a host (ComfyUI) evict models right before the memory check


@dataclass(frozen=True)
class LoadedModel:
    module: nn.Module
    identity: Identity
    source: str


@dataclass(frozen=True)
class WeightSource:
    """Everything needed to stream a module's weights in again: files, key mapping, layout conversion, request."""

    files: tuple[Path, ...]
    key_map: Callable[[Checkpoint], KeyMap | None]
    convert: Callable[[Checkpoint], Checkpoint] | None
    request: LoadRequest
    strict: bool
    what: str


WEIGHT_SOURCE = "_videosdgx_weight_source"  # attribute of every module load_model_file returns


def weight_bytes(module: nn.Module, dtype: torch.dtype, stored_bytes: int) -> int:
    """Memory the loaded weights will take: floats at `dtype`, quantized storage as declared."""
    total = 0
    for tensor in module.state_dict(keep_vars=True).values():
        keep = not tensor.dtype.is_floating_point or tensor.dtype.itemsize == 1
        total += tensor.numel() * (tensor.dtype.itemsize if keep else dtype.itemsize)
    return total or stored_bytes


def load_model_file(
    path: str | os.PathLike | list,
    *,
    family: str,
    component: str,
    loader: str,
    build: Callable[[dict[str, tuple[int, ...]], Checkpoint], nn.Module],
    key_map: Callable[[Checkpoint], KeyMap | None],
    request: LoadRequest,
    strict: bool = True,
    convert: Callable[[Checkpoint], Checkpoint] | None = None,
) -> LoadedModel:
    """Load one model component from its file(s).

    `key_map(checkpoint)` returns the mapping from the file's keys to the module's (official) names;
    `build(mapped_shapes, checkpoint)` returns the module constructed on the meta device; `convert` rewrites a
    layout whose tensors must be fused or split (not just renamed) into an in-memory checkpoint first.
    """
    files = resolve_checkpoint_files(path)
    checkpoint = open_checkpoint(files)
    identity = identify(checkpoint)
    expect(identity, family, component, checkpoint.name, loader)
    if convert is not None:
        checkpoint = convert(checkpoint)
    log.info("loading %s: %s", checkpoint.name, identity.summary())
    mapping = key_map(checkpoint)
    names = map_checkpoint_keys(checkpoint, mapping)
    shapes = {name: checkpoint.info(key).shape for name, key in names.items()}
    with torch.device("meta"):
        module = build(shapes, checkpoint)
    _prepare_quantized_storage(module, {name: checkpoint.info(key).dtype for name, key in names.items()}, shapes,
                               checkpoint.name, scaled="scaled_fp8" in checkpoint)
    if request.weight_format in FP8_FORMATS:
        from videosdgx.runtime.quantized_linear import quantize_module_linears

        quantize_module_linears(module, FP8_FORMATS[request.weight_format])  # shells, quantised as tensors arrive
    required = weight_bytes(module, request.dtype, checkpoint.nbytes)
    if request.make_room is not None:
        request.make_room(required, request.device)
    check_memory(required, request.device, identity.description)
    load_module(module, checkpoint, dtype=request.dtype, device=request.device, key_map=mapping,
                progress=request.progress, strict=strict, what=identity.description)
    checkpoint.close()
    source = WeightSource(tuple(files), key_map, convert, replace(request, progress=None, make_room=None), strict,
                          identity.description)
    object.__setattr__(module, WEIGHT_SOURCE, source)
    return LoadedModel(module, identity, checkpoint.name)


def weight_source(module: nn.Module) -> WeightSource | None:
    """Where `module`'s weights come from, if `load_model_file` loaded it."""
    return getattr(module, WEIGHT_SOURCE, None)


def resident_weight_bytes(module: nn.Module) -> int:
    """Bytes of `module`'s weights (state dict) held in memory now; 0 once dropped."""
    return sum(t.numel() * t.element_size() for t in module.state_dict(keep_vars=True).values() if not t.is_meta)


def drop_weights(module: nn.Module) -> int:
    """Free every weight of `module` (its tensors become meta tensors of the same shape); returns bytes freed.

    Only modules `load_model_file` returned can be dropped, since only they know how to `reload_weights`.
    """
    if weight_source(module) is None:
        raise ValueError(f"{type(module).__name__} was not loaded by load_model_file; its weights cannot come back")
    freed = resident_weight_bytes(module)
    for name, tensor in module.state_dict(keep_vars=True).items():
        set_tensor(module, name, torch.empty(tensor.shape, dtype=tensor.dtype, device="meta"))
    return freed


def weights_dropped(module: nn.Module) -> bool:
    return any(t.is_meta for t in module.state_dict(keep_vars=True).values())


def reload_weights(module: nn.Module, progress: Progress | None = None, make_room: MakeRoom | None = None) -> None:
    """Stream the weights of a dropped module back from its files (same dtype, device and weight format)."""
    source = weight_source(module)
    if source is None:
        raise ValueError(f"{type(module).__name__} was not loaded by load_model_file")
    checkpoint = open_checkpoint(list(source.files))
    if source.convert is not None:
        checkpoint = source.convert(checkpoint)
    request = source.request
    required = weight_bytes(module, request.dtype, checkpoint.nbytes)
    if make_room is not None:
        make_room(required, request.device)
    check_memory(required, request.device, source.what)
    load_module(module, checkpoint, dtype=request.dtype, device=request.device, key_map=source.key_map(checkpoint),
                progress=progress, strict=source.strict, what=source.what)
    checkpoint.close()


def _prepare_quantized_storage(module: nn.Module, dtypes: dict[str, torch.dtype], shapes: dict[str, tuple[int, ...]],
                               source: str, scaled: bool) -> None:
    """Swap Linears whose stored weights are fp8 / packed fp4 for the shared quantized Linear."""
    if not any(d.itemsize == 1 for d in dtypes.values()):
        return
    from videosdgx.runtime.quantized_linear import swap_linears_for_checkpoint

    swap_linears_for_checkpoint(module, dtypes, shapes, source=source, scaled=scaled)
