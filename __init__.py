"""VideosDGX for ComfyUI: nodes that run open video models (Wan 2.1 / 2.2 ...) with the VideosDGX engine.

ComfyUI executes this file as a package named after its folder path. Importing it needs only the standard
library, so a missing or broken dependency can never stop ComfyUI from starting: torch, the engine and the
nodes load when ComfyUI awaits `comfy_entrypoint` (inside ComfyUI, torch is already imported by then).
"""

import importlib.util
import logging
import os
import sys

MIN_COMFYUI = "0.3.60"
PACK_DIR = os.path.dirname(os.path.abspath(__file__))

log = logging.getLogger("VideosDGX")

if PACK_DIR not in sys.path:
    sys.path.insert(0, PACK_DIR)  # `import videosdgx` finds the engine shipped with the pack


def _has_v3_node_api() -> bool:
    try:
        return importlib.util.find_spec("comfy_api.latest") is not None
    except ImportError:
        return False


if _has_v3_node_api():

    async def comfy_entrypoint():
        """ComfyUI's V3 entry point: the extension listing every VideosDGX node."""
        from videosdgx.runtime.device import install_xpu_guard

        from .nodes import VideosDGXExtension
        from .nodes._comfy import register_model_folders

        install_xpu_guard()
        register_model_folders()
        return VideosDGXExtension()

else:
    log.warning("VideosDGX needs ComfyUI >= %s with the V3 node API (comfy_api.latest); update ComfyUI. "
                "The VideosDGX nodes are not loaded.", MIN_COMFYUI)
