"""Where model files go: finding the ComfyUI installation and reading its extra_model_paths.yaml.

ComfyUI rules followed (folder_paths.py, utils/extra_config.py): every folder key has default dirs under
`<ComfyUI>/models/`; extra_model_paths.yaml sections may set `base_path` (env vars and `~` expanded, relative to
the YAML's folder), `is_default: true` (its paths are put in front of the key's list, each one inserted first, so
the last one listed ends up first) and `key: path` or a multi-line `key: |` list; legacy keys `unet` and `clip`
mean diffusion_models and text_encoders. A file counts as installed if it is in any of the key's folders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from videosdgx.runtime.errors import ConfigurationError

LEGACY_KEYS = {"unet": "diffusion_models", "clip": "text_encoders"}
# The first name is where we download to; ComfyUI also searches the others.
DEFAULT_SUBDIRS = {"diffusion_models": ("diffusion_models", "unet"), "text_encoders": ("text_encoders", "clip")}
USUAL_PLACES = ("ComfyUI", "comfy/ComfyUI", "Documents/ComfyUI", "src/ComfyUI")
SYSTEM_PLACES = ("/opt/ComfyUI", "/workspace/ComfyUI")


def is_comfyui_root(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "folder_paths.py").is_file()


def find_comfyui(start: Path, environ: Mapping[str, str], home: Path) -> Path | None:
    """The ComfyUI root: `start` or one of its parents (the pack lives in ComfyUI/custom_nodes/<pack>), then
    $COMFYUI_PATH, then usual places under `home` and on the system. None if nothing is found."""
    start = start.resolve()
    candidates = [start, *start.parents]
    if environ.get("COMFYUI_PATH"):
        candidates.append(Path(environ["COMFYUI_PATH"]).expanduser())
    candidates += [home / place for place in USUAL_PLACES] + [Path(p) for p in SYSTEM_PLACES]
    return next((c.resolve() for c in candidates if is_comfyui_root(c)), None)


@dataclass(frozen=True)
class ExtraPath:
    key: str
    path: Path
    is_default: bool


def read_extra_model_paths(yaml_path: Path) -> list[ExtraPath]:
    """Every (folder key, path, is_default) of an extra_model_paths.yaml, in file order.

    Settings of a type ComfyUI would not read as a path (a list or a mapping as `base_path` or as a folder, a
    section that is not a mapping) are refused with the file, section and key, instead of becoming folder names.
    """
    try:
        text = yaml_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{yaml_path} does not exist: check the --extra-model-paths-config path.") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{yaml_path} is not a text file (not UTF-8): give the extra_model_paths.yaml that "
                                 "ComfyUI is started with.") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {yaml_path}: {exc.strerror or exc}.") from None
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{yaml_path} is not valid YAML ({exc}); fix it or move it away.") from None
    if not isinstance(config, dict):
        raise ConfigurationError(f"{yaml_path} must map section names to folder settings.")
    yaml_dir = yaml_path.resolve().parent
    found = []
    for name, section in config.items():
        if section is None:
            continue  # ComfyUI skips empty sections
        if not isinstance(section, dict):
            raise ConfigurationError(f"{yaml_path}: section {name!r} is {_kind(section)}; it must map folder keys "
                                     "(checkpoints, vae, ...) to paths.")
        section = dict(section)
        base = section.pop("base_path", None)
        if base is not None and not isinstance(base, (str, int, float)):
            raise ConfigurationError(f"{yaml_path}: base_path of section {name!r} is {_kind(base)}; it must be one "
                                     "folder path.")
        if base not in (None, ""):
            expanded = os.path.expandvars(str(base))
            if "$" in expanded:
                raise ConfigurationError(f"{yaml_path}: base_path {base!r} of section {name!r} uses an environment "
                                         "variable that is not set. Set it, or write the folder path out.")
            base = Path(os.path.expanduser(expanded))
            base = base if base.is_absolute() else yaml_dir / base
        else:
            base = None
        is_default = section.pop("is_default", False)
        if not isinstance(is_default, bool):
            raise ConfigurationError(f"{yaml_path}: is_default of section {name!r} is {is_default!r}; write true or "
                                     "false.")
        for key, value in section.items():
            if value is None:
                continue
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ConfigurationError(f"{yaml_path}: {key!r} of section {name!r} is {_kind(value)}; it must be a "
                                         "path, or several paths one per line (`key: |`).")
            for line in str(value).split("\n"):
                line = line.strip()
                if not line:
                    continue
                path = Path(line) if base is None else base / line
                path = path if path.is_absolute() else yaml_dir / path
                found.append(ExtraPath(LEGACY_KEYS.get(key, key), Path(os.path.normpath(path)), is_default))
    return found


def _kind(value: object) -> str:
    kinds = {list: "a list", dict: "a mapping", bool: "a boolean"}
    return f"{kinds.get(type(value), type(value).__name__)} ({value!r:.60})"


@dataclass
class ModelFolders:
    """The folders of each ComfyUI model folder key: where to download, and where to look for installed files."""

    models_dir: Path
    extra: list[ExtraPath] = field(default_factory=list)

    def target(self, key: str) -> Path:
        """The download folder: the is_default path ComfyUI puts first, else the first extra path of the key,
        else `<models>/<key>`."""
        defaults = [e.path for e in self.extra if e.key == key and e.is_default]
        if defaults:
            return defaults[-1]
        extras = [e.path for e in self.extra if e.key == key]
        return extras[0] if extras else self.models_dir / DEFAULT_SUBDIRS.get(key, (key,))[0]

    def search_dirs(self, key: str) -> list[Path]:
        """Every folder ComfyUI searches for this key, the download folder first."""
        dirs = [self.target(key)]
        dirs += [self.models_dir / sub for sub in DEFAULT_SUBDIRS.get(key, (key,))]
        dirs += [e.path for e in self.extra if e.key == key]
        return list(dict.fromkeys(dirs))


def model_folders(
    comfyui: Path | None = None,
    models_dir: Path | None = None,
    extra_configs: list[Path] = (),
) -> ModelFolders:
    """Folders for a ComfyUI installation (reads its extra_model_paths.yaml) or a plain models directory."""
    if models_dir is None:
        if comfyui is None:
            raise ConfigurationError(
                "ComfyUI was not found (looked in the current folder and its parents, $COMFYUI_PATH and ~/ComfyUI). "
                "Pass --comfyui /path/to/ComfyUI, or --models-dir DIR to use a plain models folder."
            )
        if not is_comfyui_root(comfyui):
            raise ConfigurationError(f"{comfyui} is not a ComfyUI folder (no main.py and folder_paths.py in it).")
        models_dir = comfyui / "models"
        default_yaml = comfyui / "extra_model_paths.yaml"
        extra_configs = [default_yaml, *extra_configs] if default_yaml.is_file() else list(extra_configs)
    extra = [p for config in extra_configs for p in read_extra_model_paths(Path(config))]
    return ModelFolders(Path(models_dir).resolve(), extra)
