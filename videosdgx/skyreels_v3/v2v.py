"""V2V video extension (skyreels_v3.md §3): single-shot extension in 5-second chunks, and shot switching (a cut).

Single shot: the last 25 input frames are encoded (7 latent frames) and put *before* the noisy latents with
timestep 0; each chunk's latent length is adjusted so that prefix + chunk is a multiple of 8, carrying the
padding across chunks as the release does; the chunk is decoded together with its prefix and the 25 prefix
frames dropped; the next prefix is the last 25 frames of what was just made (8-bit frames, as the release keeps
them). Shot switching: the last 9/17/25/33 frames (2/3/4/5 s) are appended *after* the noisy latents as
separate context tokens (RoPE time from 1024), and only the new latents are decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.sampling import flow_sigmas, sample, seeded_noise
from videosdgx.skyreels_v3.variants import EXTENSION_CHUNK_SECONDS, EXTENSION_MAX_SECONDS, SHOT_SECONDS
from videosdgx.wan.conditioning import TextConditioning
from videosdgx.wan.transformer import WanModel

log = logging.getLogger(__name__)

CONDITION_FRAMES = 25  # pixel frames carried into each single-shot chunk
LATENT_FRAMES_PER_SECOND = 6
LATENT_ALIGNMENT = 8
SHOT_CONDITION_FRAMES = {2: 9, 3: 17, 4: 25, 5: 33}

Decode = Callable[[torch.Tensor], torch.Tensor]  # latents -> frames [T, H, W, 3] in 0..1
Encode = Callable[[torch.Tensor], torch.Tensor]  # frames [T, H, W, 3] in 0..1 -> latents [1, z, t, h, w]
StepCallback = Callable[[int, int, torch.Tensor], None]


def check_duration(seconds: int, mode: str) -> None:
    """Refuse durations the release does not make."""
    if mode == "shot":
        if seconds not in SHOT_SECONDS:
            raise ConfigurationError(
                f"A SkyReels V3 shot switch lasts 2, 3, 4 or 5 seconds, got {seconds}; choose one of these."
            )
    elif mode == "extend":
        if not 1 <= seconds <= EXTENSION_MAX_SECONDS:
            raise ConfigurationError(
                f"SkyReels V3 extends a video by 1 to {EXTENSION_MAX_SECONDS} seconds, got {seconds}."
            )
    else:
        raise ConfigurationError(f"Unknown SkyReels V3 V2V mode {mode!r}; choose 'extend' or 'shot'.")


def condition_frames(mode: str, seconds: int) -> int:
    """How many frames of the input video the model sees."""
    return SHOT_CONDITION_FRAMES[seconds] if mode == "shot" else CONDITION_FRAMES


def chunk_latent_frames(seconds: int, prefix_latent_frames: int) -> list[int]:
    """New latent frames per chunk: 5-second pieces (remainder last) of 6 latent frames a second, each padded or
    trimmed so that prefix + chunk is a multiple of 8, with the difference carried to the next chunk."""
    pieces = [EXTENSION_CHUNK_SECONDS] * (seconds // EXTENSION_CHUNK_SECONDS)
    pieces += [seconds % EXTENSION_CHUNK_SECONDS] if seconds % EXTENSION_CHUNK_SECONDS else []
    padding, lengths = 0, []
    for piece in pieces:
        length = LATENT_FRAMES_PER_SECOND * piece
        rest = (length + prefix_latent_frames) % LATENT_ALIGNMENT
        if rest > padding:
            padding += LATENT_ALIGNMENT - rest
            length += LATENT_ALIGNMENT - rest
        else:
            padding -= rest
            length -= rest
        lengths.append(length)
    return lengths


def resize_nearest(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE frames `[T, H, W, 3]` -> `[T, height, width, 3]`, nearest neighbour (the release's resize)."""
    pixels = frames[..., :3].permute(3, 0, 1, 2)[None].float()
    resized = F.interpolate(pixels, size=(frames.shape[0], height, width))
    return resized[0].permute(1, 2, 3, 0)


def as_8bit(frames: torch.Tensor, truncate: bool = False) -> torch.Tensor:
    """Frames as 8-bit values back in 0..1: rounded (an input read from a file), or truncated as the release
    stores the frames it made (`uint8(x * 255)`)."""
    scaled = frames.clamp(0, 1) * 255
    return (scaled.floor() if truncate else scaled.round()) / 255


def extension_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The grid of Wan's FlowUniPCMultistepScheduler (the release's copy of it)."""
    return flow_sigmas(steps, shift)


def sample_frames_after(
    model: WanModel,
    text: TextConditioning,
    prefix: torch.Tensor,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    guidance: float = 1.0,
    solver: str = "unipc",
    shot: bool = False,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise `noise [1, z, L, h, w]` after the clean `prefix [1, z, P, h, w]` (timestep 0 on the prefix).

    `shot=False`: one sequence `[prefix, noisy]` (positions 0..P+L-1). `shot=True`: `[noisy]` followed by the
    prefix as appended context tokens (RoPE time from 1024). Returns float32 CPU latents `[1, z, L, h, w]`.
    """
    device = model.patch_embedding.weight.device
    prefix, length = prefix.to(device), noise.shape[2]
    contexts = [text.positive[None].to(device), text.negative[None].to(device)]

    def predict(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if shot:
            return model(x, t, context, context_latents=[prefix]).float()
        return model(torch.cat([prefix, x], dim=2), t, context)[:, :, -length:].float()

    def velocity(x: torch.Tensor, sigma: float, step: int) -> torch.Tensor:
        t = torch.zeros(1, prefix.shape[2] + length, device=device)
        new = slice(0, length) if shot else slice(prefix.shape[2], None)
        t[:, new] = float(int(sigma * 1000))
        with torch.no_grad():
            cond = predict(x, t, contexts[0])
            if guidance == 1.0:
                return cond
            uncond = predict(x, t, contexts[1])
        return uncond + guidance * (cond - uncond)

    return sample(velocity, noise.to(device), sigmas, solver, callback=callback).cpu()


def extend_single_shot(
    model: WanModel,
    text: TextConditioning,
    video: torch.Tensor,
    seconds: int,
    encode: Encode,
    decode: Decode,
    sigmas: torch.Tensor,
    seed: int,
    guidance: float = 1.0,
    solver: str = "unipc",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """New frames `[N, H, W, 3]` continuing `video` (frames already at the output size, at least 25)."""
    prefix_frames = as_8bit(video[-CONDITION_FRAMES:])
    made = []
    for index, length in enumerate(chunk_latent_frames(seconds, (CONDITION_FRAMES - 1) // 4 + 1)):
        prefix = encode(prefix_frames)
        log.info("extension chunk %d: %d new latent frames after %d", index + 1, length, prefix.shape[2])
        noise = seeded_noise((1, prefix.shape[1], length, *prefix.shape[3:]), seed)
        latents = sample_frames_after(model, text, prefix, noise, sigmas, guidance, solver, callback=callback)
        frames = as_8bit(decode(torch.cat([prefix.cpu(), latents], dim=2)), truncate=True)
        made.append(frames[CONDITION_FRAMES:])
        prefix_frames = frames[-CONDITION_FRAMES:]
    return torch.cat(made)


def switch_shot(
    model: WanModel,
    text: TextConditioning,
    video: torch.Tensor,
    seconds: int,
    fps: int,
    encode: Encode,
    decode: Decode,
    sigmas: torch.Tensor,
    seed: int,
    guidance: float = 1.0,
    solver: str = "unipc",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """The frames `[seconds * fps + 1, H, W, 3]` of a new shot after `video` (at the output size)."""
    prefix = encode(as_8bit(video[-SHOT_CONDITION_FRAMES[seconds]:]))
    length = (seconds * fps) // 4 + 1
    noise = seeded_noise((1, prefix.shape[1], length, *prefix.shape[3:]), seed)
    latents = sample_frames_after(model, text, prefix, noise, sigmas, guidance, solver, shot=True, callback=callback)
    return as_8bit(decode(latents), truncate=True)
