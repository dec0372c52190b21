"""Stand-in for ComfyUI's folder_paths, rooted at a folder the test chooses with `set_base`."""

import os
import time
from pathlib import Path

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}
base_path = ""
models_dir = ""
FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "clip_vision", "loras", "audio_encoders")
LEGACY_NAMES = {"unet": "diffusion_models", "clip": "text_encoders"}


def set_base(path, folders=FOLDERS) -> None:
    """Reset the stub to a ComfyUI rooted at `path` that registers `folders` (like a fresh start-up)."""
    global base_path, models_dir
    base_path = str(path)
    models_dir = os.path.join(base_path, "models")
    folder_names_and_paths.clear()
    for key in folders:
        folder_names_and_paths[key] = ([os.path.join(models_dir, key)], set(supported_pt_extensions))


def map_legacy(folder_name: str) -> str:
    return LEGACY_NAMES.get(folder_name, folder_name)


def add_model_folder_path(folder_name, full_folder_path, is_default=False):
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())
        return
    paths = folder_names_and_paths[folder_name][0]
    if full_folder_path in paths:
        if is_default and paths[0] != full_folder_path:
            paths.remove(full_folder_path)
            paths.insert(0, full_folder_path)
    elif is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name):
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def get_filename_list(folder_name):
    paths, exts = folder_names_and_paths[map_legacy(folder_name)]
    names = set()
    for root in paths:
        root_path = Path(root)
        if root_path.is_dir():
            names |= {str(p.relative_to(root_path)).replace(os.sep, "/") for p in root_path.rglob("*")
                      if p.is_file() and (not exts or p.suffix in exts)}
    return sorted(names)


def get_full_path(folder_name, filename):
    for root in folder_names_and_paths.get(map_legacy(folder_name), ([], set()))[0]:
        candidate = os.path.join(root, filename)
        if os.path.isfile(candidate):
            return candidate
    return None


def get_full_path_or_raise(folder_name, filename):
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


def get_output_directory():
    return os.path.join(base_path, "output")


def get_input_directory():
    return os.path.join(base_path, "input")


def get_temp_directory():
    return os.path.join(base_path, "temp")


def get_annotated_filepath(name, default_dir=None):
    """`name [input]` / `[output]` / `[temp]` pick the folder; a bare name lives in the input folder."""
    for tag, folder in (("[output]", get_output_directory()), ("[input]", get_input_directory()),
                        ("[temp]", get_temp_directory())):
        if name.endswith(tag):
            return os.path.join(folder, name[: -len(tag)].strip())
    return os.path.join(default_dir or get_input_directory(), name)


def get_save_image_path(filename_prefix, output_dir, image_width=0, image_height=0):
    """(full_output_folder, filename, counter, subfolder, filename_prefix), as ComfyUI computes them."""
    if "%" in filename_prefix:
        now = time.localtime()
        for token, value in (("%width%", image_width), ("%height%", image_height), ("%year%", now.tm_year),
                             ("%month%", f"{now.tm_mon:02}"), ("%day%", f"{now.tm_mday:02}"),
                             ("%hour%", f"{now.tm_hour:02}"), ("%minute%", f"{now.tm_min:02}"),
                             ("%second%", f"{now.tm_sec:02}")):
            filename_prefix = filename_prefix.replace(token, str(value))
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        raise Exception("**** ERROR: Saving image outside the output folder is not allowed.")
    counter = 1
    if os.path.isdir(full_output_folder):
        for existing in os.listdir(full_output_folder):
            head, _, rest = existing.partition(filename + "_")
            digits = rest.split("_")[0]
            if not head and digits.isdigit() and rest.startswith(digits + "_"):
                counter = max(counter, int(digits) + 1)
    return full_output_folder, filename, counter, subfolder, filename_prefix
