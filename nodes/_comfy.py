"""The one module that imports ComfyUI: the V3 node API, model folders, progress, interruption and devices."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import comfy.model_management as model_management
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import ComfyExtension, io, ui

__all__ = ["ComfyExtension", "io", "ui", "model_names", "named_files", "model_path", "missing_model", "progress",
           "byte_progress", "check_interrupt", "latent_previewer", "register_model_folders", "torch_device"]

log = logging.getLogger(__name__)

PACK_FOLDERS = ("latent_upscale_models", "model_patches")  # newer than some ComfyUI releases we support


def model_names(folder: str) -> list[str]:
    """The files ComfyUI lists for a model folder key (`diffusion_models`, `vae`, ...), for a combo, and the model
    folders install.py put there (folder entries, whose file names are only known at install time), by name."""
    from videosdgx.install.folders import installed_folders

    folders = [name for root in folder_paths.get_folder_paths(folder) if os.path.isdir(root)
               for name in installed_folders(Path(root))]
    return list(dict.fromkeys([*folder_paths.get_filename_list(folder), *folders]))


def named_files(folder: str, names: tuple[str, ...]) -> list[str]:
    """Files called one of `names` anywhere in a model folder, as paths relative to it: files ComfyUI does not
    list (tokenizers), for a combo whose value `model_path` / `missing_model` then find as any file."""
    found = {str(path.relative_to(root)).replace(os.sep, "/")
             for root in map(Path, folder_paths.get_folder_paths(folder)) if root.is_dir()
             for name in names for path in root.rglob(name) if path.is_file()}
    return sorted(found)


def _installed_folder(folder: str, name: str) -> str | None:
    """What to load from the model folder install.py installed as `name` (its index or weight file), if any."""
    from videosdgx.install.folders import folder_load_path

    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return None  # only folders inside the model folder, as ComfyUI's own file lookup
    for root in folder_paths.get_folder_paths(folder):
        found = folder_load_path(Path(root) / name)
        if found is not None:
            return str(found)
    return None


def model_path(folder: str, name: str) -> str:
    """Absolute path of `name` in a model folder (for an installed model folder: its index or weight file); a
    missing file names the manifest bundle that installs it."""
    try:
        return _installed_folder(folder, name) or folder_paths.get_full_path_or_raise(folder, name)
    except FileNotFoundError as error:
        searched = ", ".join(folder_paths.get_folder_paths(folder)) or f"models/{folder}"
        raise FileNotFoundError(f"{error} Looked in: {searched}. {_install_hint(folder, name)}") from None


def missing_model(folder: str, name: str) -> bool | str:
    """`validate_inputs` answer for a model file: True, or why it is missing and how to install it.

    ComfyUI does not check V3 combo values against their options before running, so without this a wrong file
    name would only fail inside the node, as an execution error instead of a validation error.
    """
    if name == "none" or folder_paths.get_full_path(folder, name) is not None or _installed_folder(folder, name):
        return True
    searched = ", ".join(folder_paths.get_folder_paths(folder)) or f"models/{folder}"
    return f"Model file '{name}' is not in {folder} ({searched}). {_install_hint(folder, name)}"


def _install_hint(folder: str, name: str) -> str:
    try:
        from videosdgx.manifest import load_manifest

        hint = load_manifest().install_hint(name)
    except ImportError:
        hint = ""
    return hint or f"Put the file in ComfyUI's models/{folder} folder (or a folder extra_model_paths.yaml adds)."


def progress(total: int, node_id: str | None = None) -> comfy.utils.ProgressBar:
    """A ComfyUI progress bar; `node_id` None lets ComfyUI use the node being executed."""
    return comfy.utils.ProgressBar(total, node_id=node_id)


def byte_progress(node_id: str | None = None) -> Callable[[int, int], None]:
    """A `progress(done_bytes, total_bytes)` callback for the engine's streamed loaders."""
    bar = progress(1, node_id)
    return lambda done, total: bar.update_absolute(done, total)


def latent_previewer(latent_format: str) -> Callable[[torch.Tensor], object]:
    """A `preview(latents)` function giving ComfyUI's live preview image for a latent space named like core's
    `comfy.latent_formats` classes ("Wan21", "Wan22", "LTXV", ...); it gives None when there is nothing to show
    (ComfyUI started without --preview-method, too old, or not knowing the format).

    Each family names its own format: our latents are normalised like core's, so its latent2rgb factors and TAE
    decoders apply. A preview never ends a run: if one fails (latents that do not fit the format's factors), the
    reason is logged once and previews stop for this run.
    """
    try:
        import comfy.latent_formats as formats
        import latent_preview
    except ImportError:
        return lambda latents: None
    if not hasattr(formats, latent_format):
        return lambda latents: None
    previewer = latent_preview.get_previewer(torch_device(), getattr(formats, latent_format)())
    failed: list[Exception] = []

    def preview(latents: torch.Tensor):
        if previewer is None or failed:
            return None
        try:
            return previewer.decode_latent_to_preview_image("JPEG", latents)
        except Exception as error:  # a preview is a nicety: log it and sample on
            failed.append(error)
            log.warning("live previews stopped: the %s preview cannot show latents of shape %s (%s)",
                        latent_format, list(latents.shape), error)
            return None

    return preview


def check_interrupt() -> None:
    """Raise ComfyUI's InterruptProcessingException if the user pressed Cancel (never catch it)."""
    model_management.throw_exception_if_processing_interrupted()


def register_model_folders() -> None:
    """Register the model folder keys the pack uses that an older ComfyUI does not know yet."""
    for key in PACK_FOLDERS:
        if key not in folder_paths.folder_names_and_paths:
            folder_paths.add_model_folder_path(key, os.path.join(folder_paths.models_dir, key))
            folder_paths.folder_names_and_paths[key][1].update(folder_paths.supported_pt_extensions)
            log.info("registered the model folder %s", key)


def torch_device() -> torch.device:
    """The device ComfyUI computes on (respects --cpu, --directml, CUDA_VISIBLE_DEVICES, ...)."""
    return model_management.get_torch_device()
