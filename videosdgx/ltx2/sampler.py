"""The LTX-2 denoising loop: video and audio latents stepped together with Euler, multi-modal guidance in x0 space,
and per-token timesteps for conditioned (image-to-video) tokens.

Latents are VAE-normalised: video `[B, C, F, H, W]`, audio `[B, C, T, M]` (packed per frame as `(c m)`).
Conditioning follows ltx-core: a token's timestep is `sigma * mask` (mask 1 = generate, 0 = keep the clean
latent), its x0 is `x - v * timestep`, and after guidance conditioned tokens are pinned to their clean values.
Keyframe tokens (images at frames other than the first, conditioning.py) are appended after the video's tokens with
their own RoPE bounds, conditioned the same way, and dropped from the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange

from videosdgx.ltx2.guidance import GuiderParams, guide
from videosdgx.ltx2.rope import audio_positions, video_positions
from videosdgx.ltx2.transformer import LTX2Model, Modality, Perturbation
from videosdgx.sampling.loop import check_finite
from videosdgx.sampling.solvers import EulerSolver, FlowSolver

PASSES = ("cond", "uncond", "perturbed", "isolated")
StepCallback = Callable[[int, int], None]


@dataclass
class TextContext:
    """Connector outputs of one prompt batch: video `[B, L, Cv]`, audio `[B, L, Ca]`, optional mask `[B, L]`."""

    video: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass
class Guidance:
    """Per-modality guidance and the blocks STG perturbs (29 for LTX-2 19B, 28 for LTX-2.3)."""

    video: GuiderParams = GuiderParams()
    audio: GuiderParams = GuiderParams()
    stg_blocks: tuple[int, ...] = ()

    def passes(self) -> list[str]:
        wanted = {"cond": True,
                  "uncond": self.video.needs_uncond or self.audio.needs_uncond,
                  "perturbed": self.video.needs_perturbed or self.audio.needs_perturbed,
                  "isolated": self.video.needs_isolated or self.audio.needs_isolated}
        return [name for name in PASSES if wanted[name]]


@dataclass
class KeyframeTokens:
    """Tokens appended after the video's: clean latents `[B, K, C]`, mask `[B, K, 1]` (1 - strength), RoPE bounds
    `[B, 3, K, 2]`, and their state at the first sigma (`start`; None: the clean latents, right for strength 1)."""

    clean: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    start: torch.Tensor | None = None


@dataclass
class VideoCondition:
    """Clean latents `[B, C, F, H, W]` and a mask `[B, 1, F, H, W]` (1 = generate, 0 = keep clean), and optional
    keyframe tokens appended to the sequence."""

    clean: torch.Tensor
    mask: torch.Tensor
    keyframes: KeyframeTokens | None = None


def noised(clean: torch.Tensor, noise: torch.Tensor, sigma: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`sigma * noise + (1 - sigma) * clean`, with sigma scaled per element by `mask` (0 keeps `clean`)."""
    s = sigma if mask is None else sigma * mask
    return s * noise + (1 - s) * clean


def denoise(
    model: LTX2Model,
    video: torch.Tensor,
    audio: torch.Tensor,
    sigmas: torch.Tensor,
    positive: TextContext,
    negative: TextContext | None = None,
    guidance: Guidance = Guidance(),
    fps: float = 24.0,
    condition: VideoCondition | None = None,
    batched: bool = True,
    callback: StepCallback | None = None,
    solvers: tuple[FlowSolver, FlowSolver] | None = None,
    on_latent: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the latents (already noised to `sigmas[0]`) down to `sigmas[-1]`; returns float32 latents.

    `solvers`: (video, audio) steppers over `sigmas` (default Euler), stepped video first. After a step that adds
    noise (`solver.renoises`, e.g. Euler-ancestral) conditioned tokens are pinned to their clean latents again.
    `on_latent` sees each step's denoised video estimate `[B, C, F, H, W]` (for live previews)."""
    batch, _, frames, height, width = video.shape
    audio_channels = audio.shape[1]
    vx = rearrange(video.float(), "b c f h w -> b (f h w) c")
    ax = rearrange(audio.float(), "b c t m -> b t (c m)")
    grid = vx.shape[1]
    positions = (video_positions(frames, height, width, fps, batch, device=video.device),
                 audio_positions(ax.shape[1], batch, device=video.device))
    mask = clean = None
    if condition is not None:
        mask = rearrange(condition.mask.float().expand(batch, 1, frames, height, width), "b 1 f h w -> b (f h w) 1")
        clean = rearrange(condition.clean.float().expand(batch, -1, -1, -1, -1), "b c f h w -> b (f h w) c")
        vx, mask, clean, positions = _append_keyframes(vx, mask, clean, positions, condition.keyframes)
    passes = guidance.passes()
    video_solver, audio_solver = solvers or (EulerSolver(sigmas), EulerSolver(sigmas))
    for step in range(len(sigmas) - 1):
        sigma = float(sigmas[step])
        v_ts = torch.full((batch, 1), sigma, device=vx.device) if mask is None else sigma * mask[..., 0]
        a_ts = torch.full((batch, 1), sigma, device=ax.device)
        outputs = _run_passes(model, passes, vx, ax, v_ts, a_ts, sigma, positions, positive, negative,
                              guidance.stg_blocks, batched)
        x0 = {name: (vx - v * v_ts[..., None], ax - a * a_ts[..., None]) for name, (v, a) in outputs.items()}
        v0 = guide(guidance.video, *(x0[name][0] if name in x0 else None for name in PASSES))
        a0 = guide(guidance.audio, *(x0[name][1] if name in x0 else None for name in PASSES))
        if mask is not None:
            v0 = v0 * mask + clean * (1 - mask)
        vx = video_solver.step(vx, (vx - v0) / sigma, step)
        ax = audio_solver.step(ax, (ax - a0) / sigma, step)
        check_finite(vx, step, (model,))
        check_finite(ax, step, (model,))
        if mask is not None and getattr(video_solver, "renoises", False):
            vx = vx * mask + clean * (1 - mask)
        if on_latent is not None:
            on_latent(rearrange(v0[:, :grid], "b (f h w) c -> b c f h w", f=frames, h=height, w=width))
        if callback is not None:
            callback(step + 1, len(sigmas) - 1)
    return (rearrange(vx[:, :grid], "b (f h w) c -> b c f h w", f=frames, h=height, w=width),
            rearrange(ax, "b t (c m) -> b c t m", c=audio_channels))


def _append_keyframes(vx, mask, clean, positions, keyframes: KeyframeTokens | None):
    """The sequence, mask, clean latents and video RoPE bounds with the keyframe tokens appended."""
    if keyframes is None:
        return vx, mask, clean, positions
    batch = vx.shape[0]
    grow = lambda t: t.float().to(vx.device).expand(batch, *t.shape[1:])
    start = keyframes.clean if keyframes.start is None else keyframes.start
    bounds = torch.cat([positions[0], grow(keyframes.positions)], dim=2)
    return (torch.cat([vx, grow(start)], dim=1), torch.cat([mask, grow(keyframes.mask)], dim=1),
            torch.cat([clean, grow(keyframes.clean)], dim=1), (bounds, positions[1]))


def _run_passes(model, passes, vx, ax, v_ts, a_ts, sigma, positions, positive, negative, stg_blocks, batched,
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Velocities of each guidance pass, in one batched forward when the prompts line up, else one by one."""
    contexts = {name: negative if name == "uncond" else positive for name in passes}
    same_length = len({c.video.shape[1] for c in contexts.values()}) == 1 and \
        len({c.mask is None for c in contexts.values()}) == 1
    groups = [passes] if batched and same_length else [[name] for name in passes]
    out = {}
    for group in groups:
        k = len(group)
        ctx = [contexts[name] for name in group]
        keep = lambda skipped: torch.tensor([float(n != skipped) for n in group]).repeat_interleave(vx.shape[0])
        perturbation = Perturbation(
            stg_blocks=stg_blocks if "perturbed" in group else (),
            stg_keep=keep("perturbed").to(vx.device) if "perturbed" in group else None,
            av_keep=keep("isolated").to(vx.device) if "isolated" in group else None,
        )
        sigmas = torch.full((vx.shape[0] * k,), sigma, device=vx.device)
        video = Modality(vx.repeat(k, 1, 1), v_ts.repeat(k, 1), sigmas, positions[0].repeat(k, 1, 1, 1),
                         _cat([c.video for c in ctx]), _cat_masks(ctx))
        audio = Modality(ax.repeat(k, 1, 1), a_ts.repeat(k, 1), sigmas, positions[1].repeat(k, 1, 1, 1),
                         _cat([c.audio for c in ctx]), _cat_masks(ctx))
        v, a = model(video, audio, perturbation)
        out.update(zip(group, zip(v.chunk(k), a.chunk(k))))
    return out


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One tensor is passed as is (the same object every step, so the DiT's text K/V cache can recognise it)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _cat_masks(contexts: list[TextContext]) -> torch.Tensor | None:
    return None if contexts[0].mask is None else _cat([c.mask for c in contexts])
