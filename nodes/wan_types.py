"""Socket types of the Wan node family and the payloads that travel on them."""

from __future__ import annotations

from dataclasses import dataclass

from videosdgx.wan.conditioning import ImageConditioning, TextConditioning
from videosdgx.wan.lora import ExpertLora
from videosdgx.wan.transformer import WanModel

from ._comfy import io

CATEGORY = "VideosDGX/Wan"

WanModelType = io.Custom("VDGX_WAN_MODEL")
WanTextEncoderType = io.Custom("VDGX_WAN_TEXT_ENCODER")
WanVAEType = io.Custom("VDGX_WAN_VAE")
WanClipVisionType = io.Custom("VDGX_WAN_CLIP_VISION")
WanConditioningType = io.Custom("VDGX_WAN_CONDITIONING")


@dataclass(frozen=True)
class WanExperts:
    """One Wan DiT, or the high- and low-noise experts of Wan2.2 A14B with the step where they switch, and the
    LoRAs the sampler applies for its run."""

    models: tuple[WanModel, ...]
    boundary: float | None
    names: tuple[str, ...]
    loras: tuple[ExpertLora, ...] = ()

    @property
    def latent_format(self) -> str:
        """ComfyUI's name of the latent space: TI2V-5B works in the Wan 2.2 VAE's, every other Wan in 2.1's."""
        return "Wan22" if self.models[0].cfg.model_type == "ti2v" else "Wan21"


@dataclass(frozen=True)
class WanConditioning:
    """Encoded prompts, plus the image parts once an image-to-video node has added them."""

    text: TextConditioning
    image: ImageConditioning | None = None
