"""Streamed loading: fill a module built on the meta device straight from a checkpoint, one tensor at a time.

Peak memory stays close to the size of the final weights: each tensor is copied from the memory-mapped file into
its final dtype and device, then its file pages are released (from the process and the page cache) before the next
tensor is read. Layers built to convert on load (fp8 `QuantizedLinear` shells) quantise each weight as it arrives,
so a bf16 file loaded as fp8 never holds the bf16 model.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.runtime.errors import CheckpointError

log = logging.getLogger(__name__)

KeyMap = Callable[[str], "str | None"]
Progress = Callable[[int, int], None]
STORAGE_DTYPES = {torch.float8_e4m3fn, torch.float8_e5m2, torch.uint8, torch.int8}


def _target_dtype(expected: torch.Tensor, stored: torch.dtype, dtype: torch.dtype | None,
                  keep_declared: bool) -> torch.dtype:
    """Quantized storage and its scales stay as the module declares them; other floats go to `dtype`."""
    if expected.dtype in STORAGE_DTYPES or keep_declared:
        return expected.dtype
    if dtype is not None and stored.is_floating_point and expected.dtype.is_floating_point:
        return dtype
    return expected.dtype if expected.dtype.is_floating_point else stored


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    owner_name, _, leaf = name.rpartition(".")
    return (module.get_submodule(owner_name) if owner_name else module), leaf


def _keeps_declared_dtype(module: nn.Module, name: str) -> bool:
    """Quantized layers list the tensors (scales) whose declared dtype must survive loading."""
    owner, leaf = _owner(module, name)
    return leaf in getattr(owner, "declared_dtype_tensors", ())


def _converted_on_load(module: nn.Module, name: str) -> bool:
    """True for tensors a converting layer derives while loading (e.g. the scale of an fp8 weight)."""
    owner, leaf = _owner(module, name)
    return leaf in getattr(owner, "converts_on_load", ())


def _converting_owner(module: nn.Module, name: str) -> nn.Module | None:
    """The layer that quantises `name` (its float weight) on arrival, if any."""
    owner, leaf = _owner(module, name)
    return owner if leaf == "weight" and getattr(owner, "converts_on_load", ()) else None


def set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Put `value` in place of the parameter or buffer `name` of `module` (a frozen Parameter for parameters)."""
    owner, leaf = _owner(module, name)
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    else:
        owner._buffers[leaf] = value


def _file_position(checkpoint: Checkpoint, key: str) -> tuple[str, int]:
    """Read tensors in file order: sequential reads, and each release frees a contiguous stretch."""
    info = checkpoint.info(key)
    return str(info.file), info.offset


def map_checkpoint_keys(checkpoint: Checkpoint, key_map: KeyMap | None) -> dict[str, str]:
    """Module name -> checkpoint key, after the family's key mapping (None from `key_map` = ignore the key).

    Two stored keys that map to one name (say `blocks.0.x` and `model.diffusion_model.blocks.0.x`) are refused:
    which of them holds the real weights cannot be told.
    """
    mapped: dict[str, str] = {}
    for key in checkpoint.keys():
        name = key_map(key) if key_map else key
        if name is None:
            continue
        if name in mapped:
            raise CheckpointError(
                f"{checkpoint.name} stores '{name}' twice (as '{mapped[name]}' and as '{key}'), so it is not one "
                "model's weights: it may be two files merged into one. Use the file as published; `videosdgx "
                "inspect FILE` tells what it is."
            )
        mapped[name] = key
    return mapped


def load_module(
    module: nn.Module,
    checkpoint: Checkpoint,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    key_map: KeyMap | None = None,
    progress: Progress | None = None,
    strict: bool = True,
    what: str = "model",
) -> nn.Module:
    """Fill every parameter and persistent buffer of `module` (usually built on meta) from `checkpoint`.

    `key_map` turns a checkpoint key into the module's name for it (None skips the key). Float tensors are cast
    to `dtype`; quantized storage (fp8 / packed) keeps the dtype the module declares. `progress(done_bytes,
    total_bytes)` is called after every tensor. Missing or mis-shaped tensors raise a `CheckpointError` that
    names the file and the first offending keys.
    """
    device = torch.device(device)
    expected = {name: tensor for name, tensor in module.state_dict(keep_vars=True).items()
                if not _converted_on_load(module, name)}
    provided = map_checkpoint_keys(checkpoint, key_map)
    missing = [name for name in expected if name not in provided]
    if missing:
        raise CheckpointError(
            f"{checkpoint.name} is not a complete {what}: {len(missing)} of {len(expected)} tensors are missing "
            f"(first: {', '.join(missing[:5])}). Check that it is the right file and that it is not a partial "
            "download; `videosdgx inspect FILE` tells what the file is."
        )
    unexpected = [provided[name] for name in provided if name not in expected]
    if unexpected:
        message = f"{checkpoint.name} has {len(unexpected)} tensors the {what} does not use: {', '.join(unexpected[:5])}"
        if strict:
            raise CheckpointError(message + ". It is probably a different variant; run `videosdgx inspect FILE`.")
        log.warning(message)
    total = sum(checkpoint.info(provided[name]).nbytes for name in expected)
    done = 0
    for name in sorted(expected, key=lambda n: _file_position(checkpoint, provided[n])):
        target, key = expected[name], provided[name]
        info = checkpoint.info(key)
        if tuple(target.shape) != info.shape:
            raise CheckpointError(
                f"{checkpoint.name}: tensor '{key}' has shape {list(info.shape)} but the {what} expects "
                f"{list(target.shape)}. The file is another variant or size of this model; run "
                "`videosdgx inspect FILE`."
            )
        converting = _converting_owner(module, name)
        if converting is not None:
            converting.set_float_weight(checkpoint.get(key).to(device, dtype or info.dtype))
        else:
            target_dtype = _target_dtype(target, info.dtype, dtype, _keeps_declared_dtype(module, name))
            value = torch.empty(info.shape, dtype=target_dtype, device=device)
            value.copy_(checkpoint.get(key))
            set_tensor(module, name, value)
        checkpoint.release(key)
        done += info.nbytes
        if progress is not None:
            progress(done, total)
    return module.eval().requires_grad_(False)
