"""The talking avatar's clip chaining (skyreels_v3.md §4; the release's `TalkingAvatarPipeline.generate`).

A first 81-frame clip is made from the portrait and the first 81 audio frames. If the speech is shorter, that clip
(cut to the speech) is the video. Otherwise its frames serve as *keyframes*, spread evenly over the speech, and the
video is made again clip by clip: each clip is conditioned on its first frames (the portrait, then the last
`motion` frames of the previous clip, re-noised to every step's level) and on its last 5 frames (the next
keyframe repeated, "pseudo frames"); the last `drop` frames of every clip but the final one are thrown away and
the next clip starts `clip - motion - drop` audio frames later. Every clip is colour-matched to the portrait.
The speech features are padded (with their own tail, reversed) to fill whole clips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from videosdgx.skyreels_v3.audio import audio_windows, load_speech, speech_features
from videosdgx.skyreels_v3.avatar import AvatarModel
from videosdgx.skyreels_v3.colour import match_colours
from videosdgx.skyreels_v3.variants import AVATAR_MAX_FRAMES, AVATAR_MAX_SECONDS
from videosdgx.skyreels_v3.wav2vec2 import Wav2Vec2Encoder
from videosdgx.wan.pipeline import decode_frames

CONNECTION_PROMPT = "a person is talking"  # the prompt of every chained clip (the user's prompt makes the keyframes)
PSEUDO_FRAMES = 5
TEMPORAL_FACTOR = 4

Encode = Callable[[torch.Tensor], torch.Tensor]  # pixels [1, 3, T, H, W] in -1..1 -> latents [1, z, t, h, w]
Decode = Callable[[torch.Tensor], torch.Tensor]  # latents -> pixels [1, 3, T, H, W] in -1..1
ClipEncode = Callable[[torch.Tensor], torch.Tensor]  # an image [1, 3, H, W] in -1..1 -> CLIP tokens [1, 257, 1280]
StepCallback = Callable[[int, int], None]  # (done, total) over all clips


@dataclass(frozen=True)
class AvatarSettings:
    steps: int
    shift: float
    guidance: float  # text
    guidance_audio: float
    clip_frames: int = 81
    motion_frames: int = 5
    drop_frames: int = 12
    max_frames: int = AVATAR_MAX_FRAMES


@dataclass(frozen=True)
class AvatarText:
    """The three text contexts `[L, D]`: the prompt (keyframe clip), the negative, the connection prompt."""

    prompt: torch.Tensor
    negative: torch.Tensor
    connection: torch.Tensor


def padded_length(real: int, clip: int, overlap: int) -> int:
    """Frames made for `real` speech frames: one clip, or a first clip plus whole steps of `clip - overlap`."""
    if real < clip:
        return clip
    rest = (real - clip) % (clip - overlap)
    return real + (clip - overlap - rest) if rest else real


def pad_features(features: torch.Tensor, length: int) -> torch.Tensor:
    """Speech features `[T, ...]` extended to `length` rows with their last rows in reverse order."""
    missing = length - features.shape[0]
    return torch.cat([features, features[-missing:].flip(0)]) if missing > 0 else features


def keyframe_indices(audio_frames: int, settings: AvatarSettings) -> list[int]:
    """Which frames of the first clip become each chained clip's pseudo frames: the clip ends along the speech,
    scaled onto the first clip's 0..clip-1 and rounded (the first, frame 0, is left out). The release counts the
    speech after padding it (`padded_length`), capped at `max_frames`."""
    clip, step = settings.clip_frames, settings.clip_frames - settings.motion_frames - settings.drop_frames
    if audio_frames <= clip:
        ends = [0, audio_frames - 1]
    else:
        ends = [0, *range(clip - 1, audio_frames - 1, step)]
        if ends[-1] != audio_frames - 1:
            ends.append(audio_frames - 1)
    ends = np.array(ends, dtype=np.int16)
    if ends[-1] > ends[0]:
        scaled = (ends.astype(np.float64) - ends[0]) * (clip - 1) / (ends[-1] - ends[0])
        ends = np.clip(np.round(scaled), 0, clip - 1).astype(np.int32)
    return [int(i) for i in ends[1:]]


def avatar_timesteps(steps: int, shift: float) -> torch.Tensor:
    """`steps + 1` float32 timesteps: linspace(1000, 1) then 0, shifted as `s t / (1 + (s - 1) t)` on t / 1000."""
    t = torch.from_numpy(np.append(np.linspace(1000, 1, steps, dtype=np.float32), np.float32(0))) / 1000
    return shift * t / (1 + (shift - 1) * t) * 1000


def frame_mask(given: torch.Tensor, lat_h: int, lat_w: int) -> torch.Tensor:
    """Per-pixel-frame flags `[T]` -> the I2V mask `[1, 4, T_latent, lat_h, lat_w]` (the first frame counted 4x)."""
    flags = torch.cat([given[:1].repeat(TEMPORAL_FACTOR), given[1:]])
    return flags.view(-1, TEMPORAL_FACTOR).transpose(0, 1)[None, :, :, None, None].expand(-1, -1, -1, lat_h, lat_w)


def condition(encode: Encode, start: torch.Tensor, end: torch.Tensor | None, frames: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """`y` (mask + latents of `start`, zeros, `end`) and the latents of the `start` frames (the motion latents)."""
    ends = 0 if end is None else end.shape[2]
    gap = torch.zeros(1, 3, frames - start.shape[2] - ends, *start.shape[-2:])
    latents = encode(torch.cat([start, gap] + ([] if end is None else [end]), dim=2)).float().cpu()
    given = torch.zeros(frames)
    given[: start.shape[2]] = 1
    if ends:
        given[-ends:] = 1
    y = torch.cat([frame_mask(given, *latents.shape[-2:]), latents], dim=1)
    return y, latents[:, :, : 1 + (start.shape[2] - 1) // TEMPORAL_FACTOR]


def renoise(latent: torch.Tensor, motion: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> None:
    """Overwrite the first latent frames with the motion latents noised to level `t` (in place)."""
    noise = torch.randn(motion.shape, generator=generator)
    level = t / 1000
    latent[:, :, : motion.shape[2]] = (1 - level) * motion + level * noise


def sample_clip(model: AvatarModel, context: torch.Tensor, negative: torch.Tensor, clip_fea: torch.Tensor,
                y: torch.Tensor, audio: torch.Tensor, noise: torch.Tensor, settings: AvatarSettings,
                generator: torch.Generator, motion: torch.Tensor | None = None,
                on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """Euler over `avatar_timesteps` with text and audio guidance (three passes when both are > 1); with `motion`,
    its latents are re-noised into the first frames before every step. Returns float32 CPU latents."""
    parameter = model.patch_embedding.weight
    device = parameter.device
    timesteps = avatar_timesteps(settings.steps, settings.shift)
    silent = torch.zeros_like(audio)
    inputs = {"clip_fea": clip_fea.to(device), "y": y.to(device)}
    latent = noise.clone()
    if motion is not None:
        renoise(latent, motion, timesteps[0], generator)

    def predict(text: torch.Tensor, sound: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(latent.to(device), t.to(device), text[None].to(device), audio=sound.to(device),
                     **inputs).float().cpu()

    text_cfg, audio_cfg = settings.guidance > 1, settings.guidance_audio > 1
    for step in range(settings.steps):
        t = timesteps[step: step + 1]
        with torch.no_grad():
            velocity = predict(context, audio, t)
            if text_cfg and audio_cfg:
                no_text, neither = predict(negative, audio, t), predict(negative, silent, t)
                velocity = (neither + settings.guidance * (velocity - no_text)
                            + settings.guidance_audio * (no_text - neither))
            elif text_cfg:
                no_text = predict(negative, audio, t)
                velocity = no_text + settings.guidance * (velocity - no_text)
            elif audio_cfg:
                no_audio = predict(context, silent, t)
                velocity = no_audio + settings.guidance_audio * (velocity - no_audio)
        latent = latent - velocity * ((timesteps[step] - timesteps[step + 1]) / 1000)
        if motion is not None:
            renoise(latent, motion, timesteps[step + 1], generator)
        if on_step is not None:
            on_step()
    return latent


def as_8bit(video: torch.Tensor) -> torch.Tensor:
    """Pixels in -1..1 -> the release's stored 8-bit values (truncated), back as IMAGE values in 0..1."""
    return ((video.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8).float() / 255


def clip_count(audio_frames: int, settings: AvatarSettings) -> int:
    """How many clips (of `settings.steps` steps) the video takes, the keyframe clip included."""
    clip, overlap = settings.clip_frames, settings.motion_frames + settings.drop_frames
    if audio_frames < clip:
        return 1
    return 2 + (padded_length(audio_frames, clip, overlap) - clip) // (clip - overlap)


def make_avatar_video(model: AvatarModel, encode: Encode, decode: Decode, clip_encode: ClipEncode,
                      portrait: torch.Tensor, features: torch.Tensor, text: AvatarText, settings: AvatarSettings,
                      seed: int, callback: StepCallback | None = None) -> torch.Tensor:
    """The video `[1, 3, N, H, W]` in 0..1 (8-bit values) for `portrait [1, 3, 1, H, W]` in -1..1 (already at the
    bucket size) and speech `features [T_audio, layers, channels]` at 25 per second; N = min(T_audio, max_frames).
    Each clip's CLIP tokens come from its first conditioning frame (the portrait, then the first motion frame)."""
    clip, motion_frames, drop = settings.clip_frames, settings.motion_frames, settings.drop_frames
    real = min(settings.max_frames, features.shape[0])
    length = padded_length(real, clip, motion_frames + drop)
    if real >= clip:  # a single short clip reads its windows from the unpadded features
        features = pad_features(features[:real], length)
    generator = torch.Generator().manual_seed(seed)
    total, done = clip_count(real, settings) * settings.steps, [0]

    def on_step() -> None:
        done[0] += 1
        if callback is not None:
            callback(done[0], total)

    def make_clip(context: torch.Tensor, start: torch.Tensor, end: torch.Tensor | None, audio_start: int,
                  first: bool) -> torch.Tensor:
        audio = audio_windows(features, audio_start, audio_start + clip)
        y, motion = condition(encode, start, end, clip)  # draws no random numbers: the noise order is the release's
        noise = torch.randn(1, model.cfg.out_dim, *y.shape[2:], generator=generator)
        with torch.no_grad():
            clip_fea = clip_encode(start[:, :, 0]).float().cpu()
        latents = sample_clip(model, context, text.negative, clip_fea, y, audio, noise, settings, generator,
                              None if first else motion, on_step)
        return decode(latents)

    keyframes = match_colours(make_clip(text.prompt, portrait, None, 0, True), portrait)
    if real < clip:
        return as_8bit(keyframes)[:, :, :real]
    keyframes = keyframes[:, :, keyframe_indices(min(settings.max_frames, length), settings)]  # padded, as released
    made, start, audio_start, index = [], portrait, 0, 0
    while True:
        last = audio_start + clip == length
        pseudo = keyframes[:, :, min(index, keyframes.shape[2] - 1)][:, :, None].repeat(1, 1, PSEUDO_FRAMES, 1, 1)
        index += 1
        video = make_clip(text.connection, start, pseudo, audio_start, audio_start == 0)
        video = match_colours(video if last else video[:, :, :-drop], portrait)
        made.append(as_8bit(video)[:, :, 0 if audio_start == 0 else start.shape[2]:])
        if last:
            break
        start = video[:, :, -motion_frames:]
        audio_start += clip - motion_frames - drop
    return torch.cat(made, dim=2)[:, :, :real]


def portrait_pixels(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE `[1, H, W, 3]` -> `[1, 3, 1, height, width]` in -1..1: scaled (bilinear, antialiased) to cover the
    size, centre-cropped, kept as 8-bit values as the release's PIL resize does."""
    pixels = image[:1, :, :, :3].permute(0, 3, 1, 2).float()
    scale = max(height / pixels.shape[2], width / pixels.shape[3])
    size = (int(np.ceil(scale * pixels.shape[2])), int(np.ceil(scale * pixels.shape[3])))
    pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = int(round((size[0] - height) / 2)), int(round((size[1] - width) / 2))
    pixels = (pixels[:, :, top: top + height, left: left + width].clamp(0, 1) * 255).round() / 255
    return (pixels * 2 - 1)[:, :, None]


def trim_audio(audio: dict, seconds: float) -> dict:
    """The AUDIO dict cut to `seconds` (the video may stop before the speech when `max_frames` caps it)."""
    samples = round(seconds * int(audio["sample_rate"]))
    return {**audio, "waveform": audio["waveform"][..., :samples]}


def animate_portrait(model: AvatarModel, vae, clip_vision, audio_encoder: Wav2Vec2Encoder, text: AvatarText,
                     image: torch.Tensor, audio: dict, height: int, width: int, settings: AvatarSettings, seed: int,
                     callback: StepCallback | None = None, fps: int = 25) -> tuple[torch.Tensor, dict]:
    """IMAGE `[1, H, W, 3]` portrait and AUDIO speech -> frames `[N, height, width, 3]` in 0..1 and the speech cut
    to them (the loaded Wan 2.1 VAE, CLIP vision and wav2vec2 modules do the encoding)."""
    features = speech_features(audio_encoder, load_speech(audio, AVATAR_MAX_SECONDS))
    vae_parameter, clip_parameter = next(vae.parameters()), next(clip_vision.parameters())

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vae.encode(pixels.to(vae_parameter.device, vae_parameter.dtype)).float()

    def decode(latents: torch.Tensor) -> torch.Tensor:
        return decode_frames(vae, latents).permute(3, 0, 1, 2)[None] * 2 - 1

    def encode_clip(picture: torch.Tensor) -> torch.Tensor:
        return clip_vision.encode(picture.to(clip_parameter.device, clip_parameter.dtype))

    video = make_avatar_video(model, encode, decode, encode_clip, portrait_pixels(image, height, width), features,
                              text, settings, seed, callback)
    frames = video[0].permute(1, 2, 3, 0)
    return frames, trim_audio(audio, frames.shape[0] / fps)
