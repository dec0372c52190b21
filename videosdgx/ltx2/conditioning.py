"""LTX-2 image conditioning: a first frame replaces latent frame 0, images at other pixel frames (the last frame)
are appended as keyframe tokens; conditioning images are re-compressed as one H.264 frame first.

ltx-pipelines `combined_image_conditionings` @ 400fd310 (diffusers `LTX2ConditionPipeline.prepare_latents`):
* pixel frame 0: the encoded image replaces latent frame 0 with denoise mask `1 - strength`
  (`VideoConditionByLatentIndex`);
* pixel frame k > 0: the image is encoded alone and its tokens are appended after the video's as clean tokens,
  denoise mask `1 - strength` (`VideoConditionByKeyframeIndex`), RoPE bounds from `rope.keyframe_positions`; no
  keyframe marker (LTX-2.5's marker is for generated keyframe slots only). They are dropped after sampling.
  `end_image` sits at the last pixel frame, `frames - 1` (ltx-pipelines takes pixel indices; diffusers' condition
  `index` is a latent index, its -1 being pixel frame `frames - 8`).
* `image_crf` (`media_io.preprocess` + `ImageConditioner.resolve_crf`): each image is re-compressed at this H.264
  CRF before resizing, as the model saw its conditioning frames in training: 33 through LTX-2.3, 18 for LTX-2.5;
  0 turns it off.

Request options: `image_strength` (first frame) and `end_image_strength` (last frame), 0..1, default 1 (kept
exactly); `image_crf`, an integer 0..51.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from einops import rearrange

from videosdgx.job import VideoRequest
from videosdgx.ltx2.rope import keyframe_positions
from videosdgx.ltx2.sampler import KeyframeTokens, VideoCondition, noised
from videosdgx.media.still import MAX_CRF, recompress_image
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.sampling.noise import seeded_noise
from videosdgx.wan.conditioning import VideoSize, image_to_video_pixels

KEYFRAME_SEED_OFFSET = 20000  # the keyframe tokens' start noise (only drawn for a strength below 1)
ONE_FRAME_END = ("--end-image: a 1-frame video has no last frame apart from its first; ask for 9 frames or more "
                 "(--frames 9, 17, ...), or give the image as --image.")


@dataclass(frozen=True)
class FrameImage:
    """An IMAGE `[B, H, W, 3]` in 0..1 (the first is used) to keep at pixel frame `frame` with `strength`."""

    image: torch.Tensor
    frame: int
    strength: float = 1.0


def default_image_crf(version: str) -> int:
    """The CRF a model generation was trained with (ltx-pipelines `default_image_crf`): 18 from LTX-2.5 on."""
    return 18 if version == "2.5" else 33


def image_crf(request: VideoRequest, version: str) -> int:
    """`--option image_crf` (checked), else the generation's default."""
    value = request.options.get("image_crf", default_image_crf(version))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 0 <= value <= MAX_CRF:
        raise ConfigurationError(f"--option image_crf={value}: write a whole number from 1 (least compressed) to "
                                 f"{MAX_CRF}, or 0 to feed images uncompressed (default {default_image_crf(version)}).")
    return int(value)


def _strength(request: VideoRequest, name: str) -> float:
    value = request.options.get(name, 1.0)
    try:
        strength = float(value)
    except (TypeError, ValueError):
        strength = float("nan")
    if not 0.0 <= strength <= 1.0:
        raise ConfigurationError(f"--option {name}={value}: write a number from 0 (the image is only a start) to 1 "
                                 "(the frame is kept exactly; the default).")
    return strength


def check_image_options(request: VideoRequest, version: str) -> None:
    """Refuse bad conditioning options and an end image on a one-frame video (before anything loads)."""
    _strength(request, "image_strength")
    _strength(request, "end_image_strength")
    image_crf(request, version)
    if request.end_image is not None and request.frames == 1:
        raise ConfigurationError(ONE_FRAME_END)


def frame_images(request: VideoRequest, frames: int) -> list[FrameImage]:
    """The request's conditioning images: `image` at frame 0, `end_image` at the last frame (`frames - 1`)."""
    images = []
    if request.image is not None:
        images.append(FrameImage(request.image, 0, _strength(request, "image_strength")))
    if request.end_image is not None:
        if frames == 1:
            raise ConfigurationError(ONE_FRAME_END)
        images.append(FrameImage(request.end_image, frames - 1, _strength(request, "end_image_strength")))
    return images


def image_condition(video_vae, images: list[FrameImage], width: int, height: int, video_shape: tuple[int, ...],
                    fps: float, crf: int, device: torch.device) -> VideoCondition | None:
    """Clean latents + mask for `images` on a `video_shape` latent grid (`width` x `height` pixels), frame 0 in
    place and the others as keyframe tokens; None without images."""
    if not images:
        return None
    clean = torch.zeros(video_shape, device=device)
    mask = torch.ones(1, 1, *video_shape[2:], device=device)
    tokens, masks, positions = [], [], []
    for item in images:
        pixels = image_to_video_pixels(recompress_image(item.image, crf), VideoSize(width, height, 1))
        latents = video_vae.encode(pixels).float().to(device)
        if item.frame == 0:
            clean[:, :, :1] = latents
            mask[:, :, 0] = 1.0 - item.strength
            continue
        tokens.append(rearrange(latents, "b c f h w -> b (f h w) c"))
        masks.append(torch.full((1, tokens[-1].shape[1], 1), 1.0 - item.strength, device=device))
        positions.append(keyframe_positions(*latents.shape[2:], item.frame, fps, device=device))
    keyframes = None
    if tokens:
        keyframes = KeyframeTokens(torch.cat(tokens, dim=1), torch.cat(masks, dim=1), torch.cat(positions, dim=2))
    return VideoCondition(clean, mask, keyframes)


def noised_keyframes(condition: VideoCondition | None, seed: int, sigma: float) -> VideoCondition | None:
    """The condition with its keyframe tokens noised to `sigma` by their mask (noise drawn only when a strength is
    below 1; strength-1 tokens start clean)."""
    if condition is None or condition.keyframes is None or not bool((condition.keyframes.mask > 0).any()):
        return condition
    keyframes = condition.keyframes
    noise = seeded_noise(keyframes.clean.shape, seed, device=keyframes.clean.device)
    return replace(condition, keyframes=replace(keyframes, start=noised(keyframes.clean, noise, sigma,
                                                                        keyframes.mask)))
