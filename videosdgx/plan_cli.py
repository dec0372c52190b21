"""`videosdgx plan`: the memory plan of a run, before anything is downloaded or loaded."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DTYPES = ("auto", "bf16", "fp16", "fp32")
GB = 1024**3


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="manifest bundle, e.g. wan2.1-t2v-14b-fp8")
    for name in ("width", "height", "frames"):
        parser.add_argument(f"--{name}", type=int, help=f"{name} (default: the model's official value)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="compute dtype (auto: bf16 on GPUs)")
    parser.add_argument("--weight-format", default="default", choices=("default", "fp8_e4m3fn"),
                        help="convert the diffusion model's weights to fp8 while loading")
    parser.add_argument("--low-memory", action="store_true", help="free the text encoder after encoding")
    parser.add_argument("--memory-gb", type=float,
                        help="plan for a CUDA machine with this much free unified memory (DGX Spark: about 119) "
                             "instead of this one")
    parser.add_argument("--models-dir", help="a models folder laid out like ComfyUI's (diffusion_models/, vae/, ...)")
    parser.add_argument("--comfyui", help="a ComfyUI folder (default: found from the current folder or $COMFYUI_PATH)")


def _files_of(args: argparse.Namespace):
    """Installed files of a bundle, or None (the plan then uses the manifest's sizes and the released configs)."""
    from videosdgx.bundle_files import MissingFilesError, find_bundle_files
    from videosdgx.install.comfyui import find_comfyui, model_folders
    from videosdgx.runtime.errors import ConfigurationError

    try:
        if args.models_dir:
            folders = model_folders(models_dir=Path(args.models_dir))
        else:
            comfyui = Path(args.comfyui) if args.comfyui else find_comfyui(Path.cwd(), os.environ, Path.home())
            folders = model_folders(comfyui=comfyui)
    except ConfigurationError:
        return lambda bundle: None

    def files_of(bundle: str):
        try:
            return find_bundle_files(bundle, folders)
        except MissingFilesError:
            return None

    return files_of


def run_plan(args: argparse.Namespace) -> int:
    """Print the plan; exit status 1 (with the settings that would fit) when it does not fit."""
    import torch

    from videosdgx.families import family
    from videosdgx.manifest import load_manifest
    from videosdgx.plan import Size, alternatives, plan_run, variant_of
    from videosdgx.runtime.device import default_dtype, select_device
    from videosdgx.runtime.errors import VideosDGXError
    from videosdgx.runtime.memory import MemoryStatus
    from videosdgx.runtime.model_files import LoadRequest

    try:
        manifest = load_manifest()
        bundle = manifest.bundle(args.model)
        variant = family(bundle.family).variant_table()[variant_of(manifest, args.model)]
        size = Size(args.width or variant.width, args.height or variant.height, args.frames or variant.frames)
        status = None
        if args.memory_gb is not None:
            device, free = torch.device("cuda"), int(args.memory_gb * GB)
            status = MemoryStatus(device, free, free, free, free, unified=True)
            dtype = torch.bfloat16
        else:
            device = select_device(args.device)
            dtype = default_dtype(device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}.get(args.dtype, dtype)
        files_of = _files_of(args)
        files = files_of(args.model)
        if files is None:
            print(f"({args.model} is not installed: weights from the manifest's file sizes, sizes of the release)")
        load = LoadRequest(dtype, device, args.weight_format)
        plan = plan_run(args.model, size, load, args.low_memory, files, status, manifest)
        print(plan.describe())
        if plan.fits:
            return 0
        options = alternatives(plan, files_of, manifest)
        print("These would fit: " + "; ".join(options) + "." if options else
              "No smaller setting of this model fits: free memory first.")
        return 1
    except VideosDGXError as exc:
        log.error("%s", exc)
        return 2
