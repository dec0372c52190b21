"""VideosDGX ComfyUI nodes (V3 API). Imported only inside ComfyUI (or its test stand-in)."""

from . import skyreels
from ._comfy import ComfyExtension, io
from .ltx2_generate import LTX2Generate
from .ltx2_loaders import LTX2Loader
from .magi1_nodes import (MagiChunkSampler, MagiModelLoader, MagiTextEncode, MagiTextEncoderLoader,
                          MagiVAELoader)
from .wan_conditioning import WanImageToVideo, WanTextEncode
from .wan_latents import WanEmptyLatent, WanVAEDecode, WanVAEEncode
from .wan_loaders import WanCLIPVisionLoader, WanModelLoader, WanTextEncoderLoader, WanVAELoader
from .wan_sampler import WanSampler

NODES = [
    WanModelLoader, WanTextEncoderLoader, WanVAELoader, WanCLIPVisionLoader, WanTextEncode, WanEmptyLatent,
    WanImageToVideo, WanSampler, WanVAEEncode, WanVAEDecode, LTX2Loader, LTX2Generate,
    MagiModelLoader, MagiTextEncoderLoader, MagiVAELoader, MagiTextEncode, MagiChunkSampler, *skyreels.NODES,
]


class VideosDGXExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
