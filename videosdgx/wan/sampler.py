"""The Wan denoising loop: flow-matching solver, classifier-free guidance, expert switching, TI2V re-injection."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.sampling import boundary_step, cfg_forward, flow_sigmas, sample, seeded_noise, trim_for_denoise
from videosdgx.wan.conditioning import ImageConditioning, TextConditioning
from videosdgx.wan.transformer import WanModel

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass(frozen=True)
class SamplingSettings:
    """`guidance` is the (high-noise expert's) CFG scale; `guidance_low` the low-noise expert's (A14B)."""

    steps: int
    shift: float
    guidance: float
    seed: int
    solver: str = "unipc"
    guidance_low: float | None = None
    boundary: float | None = None
    denoise: float = 1.0
    sigmas: tuple[float, ...] | None = None  # a custom grid (e.g. Lightning's): replaces steps / shift


def custom_sigmas(sigmas: tuple[float, ...]) -> torch.Tensor:
    """A user's grid: at least two values, from at most 1 strictly down to 0 (the last one)."""
    grid = torch.tensor(sigmas, dtype=torch.float64)
    if grid.numel() < 2 or grid[-1] != 0 or grid[0] > 1 or not bool((grid[1:] < grid[:-1]).all()):
        raise ConfigurationError(
            f"A custom sigma list must fall strictly from at most 1.0 to a final 0.0 (steps + 1 values), got "
            f"{list(sigmas)}. Example (Wan2.2 Lightning, 4 steps): 1.0, 0.9375, 0.8333, 0.625, 0.0."
        )
    return grid


def sigma_schedule(settings: SamplingSettings) -> torch.Tensor:
    """Wan's shifted sigma grid (steps + 1 values ending at 0), trimmed ComfyUI-style for denoise < 1; or the
    custom grid of `settings.sigmas` (full strength only)."""
    if settings.sigmas is not None:
        if settings.denoise < 1.0:
            raise ConfigurationError("denoise < 1 cannot be combined with a custom sigma list: set denoise to 1, "
                                     "or clear the sigma list to use steps, shift and denoise.")
        return custom_sigmas(settings.sigmas)
    if settings.steps < 1:
        raise ConfigurationError(f"steps must be at least 1, got {settings.steps}.")
    return trim_for_denoise(lambda n: flow_sigmas(n, settings.shift), settings.steps, settings.denoise)


def _pad_contexts(contexts: list[torch.Tensor]) -> torch.Tensor:
    length = max(c.shape[0] for c in contexts)
    return torch.stack([torch.cat([c, c.new_zeros(length - c.shape[0], c.shape[1])]) for c in contexts])


def sample_wan(
    experts: list[WanModel],
    text: TextConditioning,
    latent_shape: tuple[int, ...],
    settings: SamplingSettings,
    image: ImageConditioning | None = None,
    init_latents: torch.Tensor | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise from seeded noise to clean normalised latents `[1, C, T, h, w]` (float32, CPU).

    `experts`: one DiT, or the high- and low-noise experts of Wan2.2 A14B (switched at `settings.boundary`).
    `init_latents` with `denoise < 1` starts from a noised version of existing latents (video-to-video).
    """
    if len(experts) == 2 and settings.boundary is None:
        raise ConfigurationError("Two Wan experts were given but no boundary to switch between them.")
    if len(experts) == 1 and settings.boundary is not None:
        raise ConfigurationError(
            "This Wan2.2 A14B model needs both experts: load the high-noise model and the low-noise model "
            "(e.g. wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors and wan2.2_t2v_low_noise_14B_fp8_scaled)."
        )
    image = image or ImageConditioning()
    _check_inputs(experts[0], latent_shape, image)
    device = experts[0].patch_embedding.weight.device
    sigmas = sigma_schedule(settings)
    switch = boundary_step(sigmas, settings.boundary) if settings.boundary is not None else len(sigmas)
    noise = seeded_noise((1, *latent_shape), settings.seed)
    if init_latents is not None and settings.denoise < 1.0:
        x = (1 - sigmas[0]) * init_latents.float() + sigmas[0] * noise
    else:
        x = noise
    if image.first_frame is not None:
        x = _reinject(x, image)
    extras = {name: value.to(device) for name, value in (("y", image.y), ("clip_fea", image.clip_fea))
              if value is not None}
    contexts = _pad_contexts([text.positive, text.negative]).to(device)
    cond, uncond = {"context": contexts[:1], **extras}, {"context": contexts[1:], **extras}
    seq_tokens = None if image.frame_mask is None else image.frame_mask[0, 0, :, ::2, ::2].flatten().to(device)

    def velocity(x_t: torch.Tensor, sigma: float, step: int) -> torch.Tensor:
        model = experts[0] if step < switch else experts[-1]
        scale = settings.guidance if step < switch or settings.guidance_low is None else settings.guidance_low
        # Wan's schedulers feed whole timesteps; custom grids (Lightning, ComfyUI) feed sigma * 1000 as it is.
        timestep = sigma * 1000 if settings.sigmas is not None else float(int(sigma * 1000))
        t = torch.tensor([timestep], device=device)
        if seq_tokens is not None:
            t = (seq_tokens * t)[None]

        def forward(x_in: torch.Tensor, context: torch.Tensor, **rest) -> torch.Tensor:
            batch = x_in.shape[0]
            return model(x_in, t.expand(batch, *t.shape[1:]), context, **rest)

        with torch.no_grad():
            return cfg_forward(forward, x_t, cond, uncond, scale).float()

    def after_step(step: int, total: int, x_t: torch.Tensor) -> None:
        if image.first_frame is not None:
            x_t.copy_(_reinject(x_t, image))
        if callback is not None:
            callback(step, total, x_t)

    log.info("sampling %d steps (%s, shift %.1f, cfg %.1f%s)", len(sigmas) - 1, settings.solver, settings.shift,
             settings.guidance, "" if settings.boundary is None else f", {switch} high-noise steps")
    return sample(velocity, x.to(device), sigmas, settings.solver, callback=after_step, models=experts).cpu()


def _check_inputs(model: WanModel, latent_shape: tuple[int, ...], image: ImageConditioning) -> None:
    """Refuse mismatched inputs before any compute, saying what to connect instead."""
    cfg = model.cfg
    if len(latent_shape) != 4 or latent_shape[0] != cfg.out_dim:
        raise ConfigurationError(
            f"This Wan model denoises video latents with {cfg.out_dim} channels [{cfg.out_dim}, T, h, w]; got "
            f"{list(latent_shape)}. Make the latent with the matching VAE (48 channels: the Wan 2.2 VAE, for "
            "TI2V-5B; 16: the Wan 2.1 VAE, for every other Wan model)."
        )
    takes_image = cfg.in_dim != cfg.out_dim
    if takes_image != (image.y is not None):
        raise ConfigurationError(
            "This is an image-to-video Wan model: give it image conditioning (Wan Image to Video, or --image)."
            if takes_image else "This is a text-to-video Wan model: it takes no image conditioning."
        )
    if cfg.has_image_branch and image.clip_fea is None:
        raise ConfigurationError(
            "Wan2.1 I2V / FLF2V needs CLIP vision features: load clip_vision_h.safetensors with the Wan CLIP "
            "Vision Loader and connect it to Wan Image to Video."
        )


def _reinject(x: torch.Tensor, image: ImageConditioning) -> torch.Tensor:
    """Keep the TI2V first latent frame clean: `x = (1 - mask) * z0 + mask * x`."""
    mask = image.frame_mask.to(x.device)
    first = torch.zeros_like(x)
    first[:, :, :1] = image.first_frame.to(x.device)
    return (1 - mask) * first + mask * x
