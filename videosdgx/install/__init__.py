"""Model installer: ComfyUI folder detection, install planning, verified downloads (see install.py)."""

from videosdgx.install.comfyui import ModelFolders, find_comfyui, model_folders, read_extra_model_paths
from videosdgx.install.download import download_entry, install
from videosdgx.install.errors import InstallError
from videosdgx.install.plan import Plan, PlannedFile, check_disk, plan_install
from videosdgx.install.verify import verify_file

__all__ = [
    "InstallError",
    "ModelFolders",
    "Plan",
    "PlannedFile",
    "check_disk",
    "download_entry",
    "find_comfyui",
    "install",
    "model_folders",
    "plan_install",
    "read_extra_model_paths",
    "verify_file",
]
