"""Everything the Wan DiT is conditioned on: sizes, text contexts, and image latents for I2V / FLF2V / TI2V."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from videosdgx.job import fit_size
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.wan.text_prompt import WAN_NEGATIVE_PROMPT, encode_prompts

TEMPORAL_FACTOR = 4
DIT_PATCH = 2  # the DiT patchifies latents 2x2, so pixel sizes are multiples of VAE stride x 2


def size_multiple(vae_config) -> int:
    """Width and height must be multiples of this for a VAE (16 for Wan 2.1's, 32 for Wan 2.2's)."""
    return vae_config.spatial_factor * DIT_PATCH


@dataclass(frozen=True)
class VideoSize:
    """A valid Wan video size: width/height multiples of the model's stride, 4n+1 frames."""

    width: int
    height: int
    frames: int
    notes: tuple[str, ...] = ()  # the corrections made to the requested size

    def latent_shape(self, channels: int, spatial_factor: int) -> tuple[int, int, int, int]:
        return (channels, (self.frames - 1) // TEMPORAL_FACTOR + 1, self.height // spatial_factor,
                self.width // spatial_factor)


def valid_size(width: int, height: int, frames: int, multiple: int) -> VideoSize:
    """Round a requested size to the nearest valid one, noting each correction; refuse sizes that cannot work."""
    return VideoSize(*fit_size(width, height, frames, multiple, TEMPORAL_FACTOR))


@dataclass
class TextConditioning:
    """Per-prompt UMT5 states (padding rows dropped): positive and negative, each `[tokens, 4096]`."""

    positive: torch.Tensor
    negative: torch.Tensor


def encode_text(text_encoder, prompt: str, negative_prompt: str = "",
                default_negative: str = WAN_NEGATIVE_PROMPT) -> TextConditioning:
    """Encode a prompt pair; an empty negative prompt means `default_negative` (the official one)."""
    negative = negative_prompt.strip() or default_negative
    positive_states, negative_states = encode_prompts(text_encoder.encoder, text_encoder.tokenizer, [prompt, negative])
    return TextConditioning(positive_states.float().cpu(), negative_states.float().cpu())


@dataclass
class ImageConditioning:
    """Image inputs of the DiT. `y`: mask + image latents concatenated to the noise (I2V / FLF2V);
    `clip_fea`: CLIP tokens (Wan2.1); `first_frame`/`frame_mask`: TI2V-5B first-frame latent and its mask."""

    y: torch.Tensor | None = None
    clip_fea: torch.Tensor | None = None
    first_frame: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None


def image_to_video_pixels(image: torch.Tensor, size: VideoSize) -> torch.Tensor:
    """ComfyUI IMAGE `[B, H, W, 3]` in 0..1 (first image used) -> `[1, 3, 1, h, w]` in [-1, 1], resized bicubic."""
    if image.ndim != 4 or image.shape[-1] < 3:
        raise ConfigurationError(f"Expected an IMAGE tensor [batch, height, width, 3], got shape {list(image.shape)}.")
    pixels = image[:1, :, :, :3].permute(0, 3, 1, 2).float()
    pixels = F.interpolate(pixels, size=(size.height, size.width), mode="bicubic", align_corners=False)
    return (pixels.clamp(0, 1) * 2 - 1).unsqueeze(2)


def frames_to_video(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE frames `[T, H, W, C]` in 0..1 -> one video `[1, 3, T, H, W]` in [-1, 1] for the VAE."""
    return images[..., :3].permute(3, 0, 1, 2).unsqueeze(0).float() * 2 - 1


def encode_i2v(vae, size: VideoSize, start_image: torch.Tensor, end_image: torch.Tensor | None = None,
               clip_vision=None) -> ImageConditioning:
    """I2V / FLF2V conditioning (wan.md §7.2): `y = [mask (4), VAE latents of the given frames + zeros (16)]`."""
    device, dtype = _module_device_dtype(vae)
    start = image_to_video_pixels(start_image, size)
    video = torch.zeros(1, 3, size.frames, size.height, size.width)
    video[:, :, :1] = start
    given = torch.zeros(size.frames)
    given[0] = 1
    if end_image is not None:
        video[:, :, -1:] = image_to_video_pixels(end_image, size)
        given[-1] = 1
    with torch.no_grad():
        latents = vae.encode(video.to(device, dtype)).float().cpu()
    spatial = size.height // latents.shape[-2]
    lat_h, lat_w = size.height // spatial, size.width // spatial
    mask = torch.cat([given[:1].repeat(TEMPORAL_FACTOR), given[1:]])
    mask = mask.view(-1, TEMPORAL_FACTOR).transpose(0, 1)[:, :, None, None].expand(-1, -1, lat_h, lat_w)
    y = torch.cat([mask[None], latents], dim=1)
    clip_fea = None
    if clip_vision is not None:
        images = [start[:, :, 0]] + ([image_to_video_pixels(end_image, size)[:, :, 0]] if end_image is not None else [])
        with torch.no_grad():
            clip_fea = torch.cat([clip_vision.encode(img) for img in images], dim=1).float().cpu()
    return ImageConditioning(y=y, clip_fea=clip_fea)


def encode_ti2v(vae, size: VideoSize, image: torch.Tensor) -> ImageConditioning:
    """TI2V-5B image conditioning (wan.md §7.3): the first latent frame is the encoded image, kept clean."""
    device, dtype = _module_device_dtype(vae)
    with torch.no_grad():
        first = vae.encode(image_to_video_pixels(image, size).to(device, dtype)).float().cpu()
    frames = (size.frames - 1) // TEMPORAL_FACTOR + 1
    mask = torch.ones(1, 1, frames, *first.shape[-2:])
    mask[:, :, 0] = 0
    return ImageConditioning(first_frame=first, frame_mask=mask)


def _module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(module.parameters())
    return parameter.device, parameter.dtype
