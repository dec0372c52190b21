"""Where the shipped data lives (manifest, workflows) and where models go when there is no ComfyUI.

In a source checkout or an editable install the data sits at the repository root. A wheel carries a copy inside
the package (`videosdgx/_shipped/`, made by setup.py at build time), so an installed `videosdgx` finds it too.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
MODELS_DIR_VARIABLE = "VIDEOSDGX_MODELS_DIR"


def shipped(name: str) -> Path:
    """A shipped file or folder (`model_manifest.yaml`, `workflows`): the wheel's copy, else the checkout's."""
    bundled = PACKAGE / "_shipped" / name
    return bundled if bundled.exists() else PACKAGE.parent / name


def default_models_dir() -> Path:
    """The models folder used without ComfyUI: $VIDEOSDGX_MODELS_DIR, else $XDG_DATA_HOME/videosdgx/models
    (~/.local/share/videosdgx/models). Laid out like ComfyUI's (diffusion_models/, vae/, ...)."""
    if os.environ.get(MODELS_DIR_VARIABLE):
        return Path(os.environ[MODELS_DIR_VARIABLE]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "videosdgx" / "models"
