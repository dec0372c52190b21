"""LTX-2 sigma schedules: the published distilled grids and the token-count-shifted dev schedule.

Values and rules from ltx-pipelines `utils/constants.py` and ltx-core `components/schedulers.py` (`LTX2Scheduler`)
@ 400fd310.
"""

from __future__ import annotations

import math

import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.sampling.schedules import shift_sigmas

DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
STAGE2_SIGMAS = (0.909375, 0.725, 0.421875, 0.0)
BASE_SHIFT, MAX_SHIFT = 0.95, 2.05
BASE_TOKENS, MAX_TOKENS = 1024, 4096
TERMINAL = 0.1


def distilled_sigmas(steps: int = 8) -> torch.Tensor:
    """The distilled model's grid (8 steps); fewer steps keep its last `steps` (the low-noise end)."""
    if not 1 <= steps <= len(DISTILLED_SIGMAS) - 1:
        raise ConfigurationError(f"The distilled LTX-2 schedule has 1 to 8 steps, got {steps}.")
    return torch.tensor(DISTILLED_SIGMAS[-(steps + 1):], dtype=torch.float32)


def ltx2_sigmas(steps: int, tokens: int = MAX_TOKENS, stretch: bool = True, terminal: float = TERMINAL) -> torch.Tensor:
    """`steps + 1` float32 sigmas of LTX2Scheduler for a video latent of `tokens` = frames x height x width.

    linspace(1, 0) shifted by `e^s`, `s` linear in the token count through (1024, 0.95) and (4096, 2.05); then
    stretched so the last non-zero sigma equals `terminal`.
    """
    if steps < 1:
        raise ConfigurationError(f"steps must be at least 1, got {steps}.")
    slope = (MAX_SHIFT - BASE_SHIFT) / (MAX_TOKENS - BASE_TOKENS)
    shift = math.exp(tokens * slope + BASE_SHIFT - slope * BASE_TOKENS)
    sigmas = shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)
    if stretch:
        one_minus = 1.0 - sigmas[:-1]
        sigmas[:-1] = 1.0 - one_minus / (one_minus[-1] / (1.0 - terminal))
    return sigmas.float()
