"""Flow-matching sigma grids: timestep shift, Wan's grid, denoise trimming, expert boundaries.

Convention: `x_t = (1 - σ)·x0 + σ·noise`, σ runs from ~1 (noise) down to 0 (clean), a grid for N steps
holds N + 1 sigmas ending in 0, and the timestep fed to a DiT is `σ·1000`.
Grids are float64; `.float()` of a grid equals the float32 sigmas of the reference schedulers bit for bit.
"""

from collections.abc import Callable

import torch

from videosdgx.runtime.errors import ConfigurationError

WAN_SIGMA_MAX = float(torch.tensor(1 - 1 / 1000, dtype=torch.float32))
"""Wan's first unshifted sigma: 1 - 1/1000 as its scheduler stores it (float32, 0.99900001287...)."""

_NEAR_ONE = 1e-6


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Apply the SD3 / Wan timestep shift `σ' = shift·σ / (1 + (shift - 1)·σ)`.

    It maps 0 to 0 and 1 to 1; shift > 1 spends more steps at high noise. LTX-2's exponential shift
    `e^s / (e^s + 1/σ - 1)` is the same map with `shift = e^s`; MAGI-1's `t = x / (3 - 2x)` is shift 3
    written for `σ = 1 - x`.
    """
    if shift <= 0:
        raise ConfigurationError(f"shift must be positive, got {shift}.")
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_sigmas(
    steps: int, shift: float, sigma_max: float = WAN_SIGMA_MAX, sigma_min: float = 0.0
) -> torch.Tensor:
    """Shifted flow grid of `steps + 1` float64 sigmas: `linspace(sigma_max, sigma_min, steps + 1)[:steps]`,
    shifted, then a final 0.

    The defaults give Wan's `FlowUniPCMultistepScheduler` grid; `sigma_max=1.0, sigma_min=1e-3` gives
    diffusers' `UniPCMultistepScheduler(use_flow_sigmas=True)` grid, including its rule that a first sigma
    within 1e-6 of 1 is lowered by 1e-6 (so UniPC's log-SNR stays finite).
    """
    if steps < 1:
        raise ConfigurationError(f"steps must be at least 1, got {steps}.")
    unshifted = torch.arange(steps, dtype=torch.float64) * ((sigma_min - sigma_max) / steps) + sigma_max
    sigmas = shift_sigmas(unshifted, shift)
    if abs(sigmas[0].item() - 1) < _NEAR_ONE:
        sigmas[0] -= _NEAR_ONE
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def trim_for_denoise(schedule: Callable[[int], torch.Tensor], steps: int, denoise: float) -> torch.Tensor:
    """Grid for img2img / video2video at strength `denoise` in (0, 1], by ComfyUI's rule
    (`KSampler.set_steps`): build the schedule for `int(steps / denoise)` steps and keep its last
    `steps + 1` sigmas, so `steps` steps still run, starting from a partly noised input.

    `schedule(n)` returns the full-strength grid for n steps, e.g. `lambda n: flow_sigmas(n, shift)`.
    """
    if not 0.0 < denoise <= 1.0:
        raise ConfigurationError(
            f"denoise must be in (0, 1], got {denoise}; use 1.0 to generate from pure noise."
        )
    if denoise > 0.9999:
        return schedule(steps)
    return schedule(int(steps / denoise))[-(steps + 1):]


def boundary_step(sigmas: torch.Tensor, boundary: float) -> int:
    """Number of leading steps that use Wan2.2's high-noise expert: steps whose timestep
    `σ·1000 >= boundary·1000` (Wan2.2 compares its int-truncated timesteps with 875 / 900, which is the
    same test because the boundary timestep is a whole number). Steps from this index on use the low-noise
    expert."""
    timesteps = sigmas[:-1].double() * 1000
    return int((timesteps >= boundary * 1000).sum())
