"""R2V denoising: reference latents appended after the noisy frames in time (skyreels_v3.md §2)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from videosdgx.sampling import flow_sigmas, sample
from videosdgx.wan.conditioning import TextConditioning
from videosdgx.wan.transformer import WanModel

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, torch.Tensor], None]


def r2v_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The grid of diffusers' `UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift)` the release uses."""
    return flow_sigmas(steps, shift, sigma_max=1.0, sigma_min=1e-3)


def sample_r2v(
    model: WanModel,
    text: TextConditioning,
    noise: torch.Tensor,
    references: torch.Tensor,
    sigmas: torch.Tensor,
    guidance: float = 1.0,
    guidance_image: float = 1.0,
    solver: str = "unipc",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise `noise [1, z, T, h, w]` conditioned on `references [1, z, 4, h, w]`; returns float32 CPU latents.

    Every token gets the same timestep; only the first T output frames are used. With `guidance > 1` the release's
    dual guidance runs three passes: `u_ti + g_img·(u_t - u_ti) + g·(c - u_t)`, where `u_t` has the negative
    prompt and `u_ti` also all-zero references.
    """
    device = model.patch_embedding.weight.device
    frames = noise.shape[2]
    positive, negative = text.positive[None].to(device), text.negative[None].to(device)
    references = references.to(device)

    def predict(x: torch.Tensor, t: torch.Tensor, refs: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return model(torch.cat([x, refs], dim=2), t, context)[:, :, :frames].float()

    def velocity(x: torch.Tensor, sigma: float, step: int) -> torch.Tensor:
        t = torch.tensor([float(int(sigma * 1000))], device=device)
        with torch.no_grad():
            cond = predict(x, t, references, positive)
            if guidance <= 1.0:
                return cond
            uncond_text = predict(x, t, references, negative)
            uncond_both = predict(x, t, torch.zeros_like(references), negative)
        return uncond_both + guidance_image * (uncond_text - uncond_both) + guidance * (cond - uncond_text)

    log.info("R2V sampling: %d steps (%s), cfg %.1f / image %.1f", len(sigmas) - 1, solver, guidance, guidance_image)
    return sample(velocity, noise.to(device), sigmas, solver, callback=callback).cpu()
