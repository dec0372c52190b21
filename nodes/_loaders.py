"""What every family's loader nodes share: the file combo of a model folder, its validation before the run, and
how a node asks the engine to load (device, dtype and weight format from ComfyUI, byte progress on the node)."""

from __future__ import annotations

import torch

from videosdgx.request import WEIGHT_FORMATS
from videosdgx.runtime.device import default_dtype
from videosdgx.runtime.model_files import LoadRequest

from ._comfy import byte_progress, io, missing_model, model_names, model_path, torch_device
from ._model_manager import make_room

NONE = "none"
WEIGHT_DTYPES = {"default": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_request(weight_dtype: str = "default", weight_format: str = "default") -> LoadRequest:
    """Load onto ComfyUI's device, in the chosen dtype (default: bf16 on GPUs, fp32 on CPU), showing byte progress,
    after ComfyUI has unloaded what it must to make room."""
    device = torch_device()
    dtype = WEIGHT_DTYPES[weight_dtype] or default_dtype(device)
    return LoadRequest(dtype=dtype, device=device, weight_format=weight_format, progress=byte_progress(),
                       make_room=make_room)


def model_file(name: str, folder: str, tooltip: str, optional: bool = False) -> io.Combo.Input:
    """A combo listing the files of a ComfyUI model folder; `optional` adds a leading 'none'."""
    options = model_names(folder)
    return io.Combo.Input(name, options=[NONE, *options] if optional else options, default=NONE if optional else None,
                          tooltip=tooltip)


def weight_options() -> list[io.Combo.Input]:
    """The compute dtype and storage format choices of a diffusion-model loader."""
    return [
        io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                       tooltip="Compute dtype; default is bf16 on GPUs and fp32 on CPU."),
        io.Combo.Input("weight_format", options=list(WEIGHT_FORMATS), default="default",
                       tooltip="fp8_e4m3fn stores the Linear weights in fp8 (half the memory of bf16)."),
    ]


def check_files(**files: tuple[str, str]) -> bool | str:
    """`validate_inputs` for loader nodes: each `input=(folder, name)` must be installed; the first problem wins."""
    for folder, name in files.values():
        found = missing_model(folder, name)
        if found is not True:
            return found
    return True


def first_problem(*answers: bool | str) -> bool | str:
    """The first `validate_inputs` answer that is not True (every check is made first: they are cheap)."""
    return next((answer for answer in answers if answer is not True), True)


def check_choice(name: str, value: str, options) -> bool | str:
    """A combo value ComfyUI does not check itself (V3 combos) must be one of its options."""
    return True if value in options else f"{name} '{value}' is not one of: {', '.join(map(str, options))}."


def model_file_in(name: str, folders: tuple[str, ...], tooltip: str, optional: bool = False) -> io.Combo.Input:
    """A combo listing the files of several model folders (a model that ships as one file or split per part)."""
    options = list(dict.fromkeys(option for folder in folders for option in model_names(folder)))
    return io.Combo.Input(name, options=[NONE, *options] if optional else options, default=NONE if optional else None,
                          tooltip=tooltip)


def check_file_in(folders: tuple[str, ...], name: str) -> bool | str:
    """`validate_inputs` answer for a `model_file_in` combo: installed in one of `folders`, or why not."""
    answers = [missing_model(folder, name) for folder in folders]
    return True if True in answers else answers[0]


def path_in(folders: tuple[str, ...], name: str) -> str:
    """Absolute path of `name` from the first of `folders` holding it (the first folder's message if none)."""
    for folder in folders:
        if missing_model(folder, name) is True:
            return model_path(folder, name)
    return model_path(folders[0], name)
