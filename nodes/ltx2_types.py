"""Socket types of the LTX-2 node family."""

from __future__ import annotations

from ._comfy import io

CATEGORY = "VideosDGX/LTX-2"

LTX2PipelineType = io.Custom("VDGX_LTX2_PIPELINE")
