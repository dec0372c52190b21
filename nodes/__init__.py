"""VideosDGX ComfyUI nodes (V3 API). Imported only inside ComfyUI (or its test stand-in)."""

from . import skyreels
from ._comfy import ComfyExtension, io
from .ltx2_loaders import (LTX2AudioVAELoader, LTX2Loader, LTX2TextEncoderLoader, LTX2UpsamplerLoader,
                           LTX2VAELoader)
from .ltx2_sampling import LTX2Decode, LTX2Sampler, LTX2TextEncode
from .ltx25_loaders import LTX25DurationHeadLoader, LTX25TextEncoderLoader, LTX25VideoDecoderLoader
from .ltx25_nodes import LTX25Decode, LTX25Length
from .magi1_nodes import (MagiChunkSampler, MagiModelLoader, MagiTextEncode, MagiTextEncoderLoader,
                          MagiVAELoader)
from .wan_conditioning import WanImageToVideo, WanTextEncode
from .wan_latents import WanEmptyLatent, WanVAEDecode, WanVAEEncode
from .wan_loaders import WanCLIPVisionLoader, WanModelLoader, WanTextEncoderLoader, WanVAELoader
from .wan_lora import WanLoraLoader
from .wan_sampler import WanSampler

NODES = [
    WanModelLoader, WanLoraLoader, WanTextEncoderLoader, WanVAELoader, WanCLIPVisionLoader, WanTextEncode,
    WanEmptyLatent, WanImageToVideo, WanSampler, WanVAEEncode, WanVAEDecode, LTX2Loader, LTX2TextEncoderLoader,
    LTX2TextEncode, LTX2VAELoader, LTX2AudioVAELoader, LTX2UpsamplerLoader, LTX2Sampler, LTX2Decode,
    LTX25TextEncoderLoader, LTX25VideoDecoderLoader, LTX25DurationHeadLoader, LTX25Length, LTX25Decode,
    MagiModelLoader, MagiTextEncoderLoader, MagiVAELoader, MagiTextEncode, MagiChunkSampler, *skyreels.NODES,
]


class VideosDGXExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
