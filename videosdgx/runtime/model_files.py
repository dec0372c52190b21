"""The one path every loader takes: open, identify, refuse the wrong file, build on meta, check memory, stream in."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.identify import Identity, expect, identify
from videosdgx.runtime.loading import KeyMap, Progress, load_module, map_checkpoint_keys
from videosdgx.runtime.memory import check_memory

log = logging.getLogger(__name__)

FP8_FORMATS = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


@dataclass(frozen=True)
class LoadRequest:
    """How to load: compute dtype, device, and an optional weight format to convert to ("default" keeps files')."""

    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    weight_format: str = "default"
    progress: Progress | None = None


@dataclass(frozen=True)
class LoadedModel:
    module: nn.Module
    identity: Identity
    source: str


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
    checkpoint = open_checkpoint(path)
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
    _prepare_quantized_storage(module, {name: checkpoint.info(key).dtype for name, key in names.items()}, shapes)
    if request.weight_format in FP8_FORMATS:
        from videosdgx.runtime.quantized_linear import quantize_module_linears

        quantize_module_linears(module, FP8_FORMATS[request.weight_format])  # shells, quantised as tensors arrive
    check_memory(weight_bytes(module, request.dtype, checkpoint.nbytes), request.device, identity.description)
    load_module(module, checkpoint, dtype=request.dtype, device=request.device, key_map=mapping,
                progress=request.progress, strict=strict, what=identity.description)
    checkpoint.close()
    return LoadedModel(module, identity, checkpoint.name)


def _prepare_quantized_storage(module: nn.Module, dtypes: dict[str, torch.dtype],
                               shapes: dict[str, tuple[int, ...]]) -> None:
    """Swap Linears whose stored weights are fp8 / packed fp4 for the shared quantized Linear."""
    if not any(d.itemsize == 1 for d in dtypes.values()):
        return
    from videosdgx.runtime.quantized_linear import swap_linears_for_checkpoint

    swap_linears_for_checkpoint(module, dtypes, shapes)
