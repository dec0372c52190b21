"""Euler-ancestral stepping for rectified-flow models (`alpha = 1 - sigma`), a `FlowSolver`.

Each step goes deterministically to `sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)` and renoises
back to `sigma_next`, scaling the signal by `alpha_next / alpha_down` (ltx-core `EulerAncestralDiffusionStep`,
diffusers `LTXEulerAncestralRFScheduler`, ComfyUI `sample_euler_ancestral_RF`). `eta = 0` is plain Euler; a step to
sigma 0 returns the denoised estimate.
"""

from __future__ import annotations

from typing import Callable

import torch


class EulerAncestralSolver:
    """`step(x, v, i)` with the model velocity `v = noise - x0` at `sigmas[i]`; `noise(shape)` draws the renoise
    term (default: `torch.randn` with `generator`, in float32 on x's device)."""

    renoises = True

    def __init__(self, sigmas: torch.Tensor, eta: float = 1.0, s_noise: float = 1.0,
                 generator: torch.Generator | None = None,
                 noise: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.sigmas = sigmas.float().cpu()
        self.eta, self.s_noise = eta, s_noise
        self.noise = noise or (lambda x: torch.randn(x.shape, generator=generator, device=x.device))

    def step(self, x: torch.Tensor, velocity: torch.Tensor, i: int) -> torch.Tensor:
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        sample = x.float()
        denoised = sample - sigma * velocity.float()
        if sigma_next == 0:
            return denoised.to(x.dtype)
        sigma_down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * self.eta)
        ratio = sigma_down / sigma
        out = ratio * sample + (1.0 - ratio) * denoised
        if self.eta > 0 and self.s_noise > 0:
            alpha_next, alpha_down = 1.0 - sigma_next, 1.0 - sigma_down
            renoise = (sigma_next ** 2 - sigma_down ** 2 * alpha_next ** 2 / alpha_down ** 2).clamp(min=0).sqrt()
            out = alpha_next / alpha_down * out + self.noise(sample).float() * renoise * self.s_noise
        return out.to(x.dtype)
