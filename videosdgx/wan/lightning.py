"""Wan2.2 Lightning (lightx2v): the A14B experts with the 4-step distillation LoRA pair, Euler, CFG 1.

Schedule of ModelTC/Wan2.2-Lightning @ 92efeb4 (wan/utils/fm_solvers_euler.py, wan/configs/wan_{t2v,i2v}_A14B.py):
timesteps `linspace(1000, 0, steps + 1)` shifted by 5 (1000, 937.5, 833.3, 625), a first-order Euler step, guidance
scale 1 for both experts, and the usual expert boundary (0.875 T2V, 0.9 I2V: two steps on each expert). The
timesteps go to the DiT unrounded.
"""

from __future__ import annotations

import torch

from videosdgx.sampling import shift_sigmas
from videosdgx.wan.sampler import SamplingSettings

LIGHTNING_STEPS = 4
LIGHTNING_SHIFT = 5.0


def lightning_sigmas(steps: int = LIGHTNING_STEPS, shift: float = LIGHTNING_SHIFT) -> tuple[float, ...]:
    """`steps + 1` sigmas: `linspace(1, 0, steps + 1)` shifted by `shift` (the final 0 stays 0)."""
    return tuple(shift_sigmas(torch.linspace(1, 0, steps + 1, dtype=torch.float64), shift).tolist())


def lightning_settings(boundary: float | None, seed: int, steps: int = LIGHTNING_STEPS) -> SamplingSettings:
    """Sampling settings of a Lightning run (Euler, CFG 1 on both experts, the published timesteps)."""
    return SamplingSettings(steps=steps, shift=LIGHTNING_SHIFT, guidance=1.0, guidance_low=1.0, seed=seed,
                            solver="euler", boundary=boundary, sigmas=lightning_sigmas(steps))
