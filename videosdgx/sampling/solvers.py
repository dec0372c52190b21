"""Flow-matching ODE solvers over a fixed sigma grid: Euler and UniPC (Wan's default).

A solver is built for one trajectory and stepped with consecutive indices: `step(x, v, i)` moves x from
`sigmas[i]` to `sigmas[i + 1]` given the model velocity `v = noise - x0` at `sigmas[i]`. Arithmetic runs in
float32 (float64 when x is float64); the result has x's dtype.
"""

import math
from typing import Protocol

import torch

from videosdgx.runtime.errors import ConfigurationError


class FlowSolver(Protocol):
    """One trajectory's stepper over a fixed grid `sigmas` (N + 1 values for N steps)."""

    sigmas: torch.Tensor

    def step(self, x: torch.Tensor, velocity: torch.Tensor, i: int) -> torch.Tensor:
        """Return x moved from `sigmas[i]` to `sigmas[i + 1]`."""
        ...


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class EulerSolver:
    """First-order step `x + (σ_{i+1} - σ_i)·v` (diffusers `FlowMatchEulerDiscreteScheduler`, ComfyUI `euler`)."""

    def __init__(self, sigmas: torch.Tensor):
        self.sigmas = sigmas.double().cpu()

    def step(self, x: torch.Tensor, velocity: torch.Tensor, i: int) -> torch.Tensor:
        dt = (self.sigmas[i + 1] - self.sigmas[i]).item()
        dtype = _compute_dtype(x)
        return (x.to(dtype) + dt * velocity.to(dtype)).to(x.dtype)


def _log_snr(sigma: float) -> float:
    """λ = log(α / σ) with α = 1 - σ; +inf at σ = 0."""
    return math.inf if sigma == 0 else math.log(1 - sigma) - math.log(sigma)


def _bh2_terms(h: float, order: int) -> tuple[float, list[float]]:
    """UniPC's B(h) = e^{-h} - 1 ("bh2", data prediction) and the right-hand sides b_1..b_order of its order
    conditions, b_k = k!·g_k / B(h) with g_1 = B(h)/(-h) - 1 and g_{k+1} = g_k/(-h) - 1/(k+1)!."""
    hh = -h
    b_h = math.expm1(hh)
    phi = b_h / hh - 1
    factorial = 1
    rhs = []
    for k in range(1, order + 1):
        rhs.append(phi * factorial / b_h)
        factorial *= k + 1
        phi = phi / hh - 1 / factorial
    return b_h, rhs


def _solve(rows: list[list[float]], rhs: list[float]) -> list[float]:
    matrix, vector = torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64)
    return torch.linalg.solve(matrix, vector).tolist()


class UniPCSolver:
    """UniPC multistep predictor-corrector on the data prediction `x0 = x - σ·v` ("bh2" variant).

    Reproduces diffusers `UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
    solver_order=order, predict_x0=True, solver_type="bh2", lower_order_final=True,
    final_sigmas_type="zero")` and Wan's `FlowUniPCMultistepScheduler` on the same grid: order warms up from 1,
    the last step is first order, and every step after the first is corrected (UniC) with the new model output
    before predicting (UniP). Every sigma but the last must lie in (0, 1), strictly decreasing.
    """

    def __init__(self, sigmas: torch.Tensor, order: int = 2):
        if order < 1:
            raise ConfigurationError(f"UniPC order must be at least 1, got {order}.")
        values = sigmas.double().cpu()
        if values.ndim != 1 or len(values) < 2 or not bool((values[1:] < values[:-1]).all()):
            raise ConfigurationError("UniPC needs a strictly decreasing 1-D sigma grid of at least 2 values.")
        if not 0.0 < values[:-1].min().item() <= values[0].item() < 1.0 or values[-1].item() < 0:
            raise ConfigurationError(
                f"UniPC needs sigmas in (0, 1) followed by a final sigma >= 0, got first {values[0].item()} "
                f"and last {values[-1].item()}; build the grid with flow_sigmas."
            )
        self.sigmas = values
        self.order = order
        self._sigma = values.tolist()
        self._lambda = [_log_snr(s) for s in self._sigma]
        self._x0: list[torch.Tensor] = []
        self._last_sample: torch.Tensor | None = None
        self._last_order = 0
        self._next_step: int | None = None

    def step(self, x: torch.Tensor, velocity: torch.Tensor, i: int) -> torch.Tensor:
        if self._next_step is not None and i != self._next_step:
            raise ValueError(f"UniPC steps must be consecutive: expected step {self._next_step}, got {i}.")
        dtype = _compute_dtype(x)
        sample = x.to(dtype)
        x0 = sample - self._sigma[i] * velocity.to(dtype)
        if self._last_sample is not None:
            sample = self._correct(sample, x0, i)
        self._x0 = (self._x0 + [x0])[-self.order:]
        self._last_sample = sample
        self._last_order = min(self.order, len(self.sigmas) - 1 - i, len(self._x0))
        self._next_step = i + 1
        return self._predict(sample, i).to(x.dtype)

    def _differences(self, s0: int, h: float, count: int) -> tuple[list[float], list[torch.Tensor]]:
        """Log-SNR ratios r_k and scaled differences (x0_{s0-k} - x0_{s0}) / r_k for k = 1..count, using the
        stored x0 predictions (newest, at s0, last)."""
        ratios, diffs = [], []
        for k in range(1, count + 1):
            r = (self._lambda[s0 - k] - self._lambda[s0]) / h
            ratios.append(r)
            diffs.append((self._x0[-1 - k] - self._x0[-1]) / r)
        return ratios, diffs

    def _predict(self, sample: torch.Tensor, i: int) -> torch.Tensor:
        """UniP: move `sample` from sigmas[i] to sigmas[i + 1] with the last `_last_order` x0 predictions."""
        order = self._last_order
        sigma_s, sigma_t = self._sigma[i], self._sigma[i + 1]
        h = self._lambda[i + 1] - self._lambda[i]
        b_h, rhs = _bh2_terms(h, order)
        ratios, diffs = self._differences(i, h, order - 1)
        out = (sigma_t / sigma_s) * sample - (1 - sigma_t) * b_h * self._x0[-1]
        if diffs:
            if order == 2:
                rhos = [0.5]
            else:
                rhos = _solve([[r**p for r in ratios] for p in range(order - 1)], rhs[:-1])
            out = out - (1 - sigma_t) * b_h * sum(rho * d for rho, d in zip(rhos, diffs))
        return out

    def _correct(self, sample: torch.Tensor, x0: torch.Tensor, i: int) -> torch.Tensor:
        """UniC: redo the last predictor step (sigmas[i - 1] -> sigmas[i]) using the new x0 at sigmas[i]."""
        order = self._last_order
        sigma_s, sigma_t = self._sigma[i - 1], self._sigma[i]
        h = self._lambda[i] - self._lambda[i - 1]
        b_h, rhs = _bh2_terms(h, order)
        ratios, diffs = self._differences(i - 1, h, order - 1)
        if order == 1:
            rhos = [0.5]
        else:
            rhos = _solve([[r**p for r in ratios + [1.0]] for p in range(order)], rhs)
        correction = rhos[-1] * (x0 - self._x0[-1]) + sum(rho * d for rho, d in zip(rhos[:-1], diffs))
        return (sigma_t / sigma_s) * self._last_sample - (1 - sigma_t) * b_h * (self._x0[-1] + correction)


SOLVERS = {"unipc": UniPCSolver, "euler": EulerSolver}


def make_solver(name: str, sigmas: torch.Tensor) -> FlowSolver:
    """Build the solver called `name` ("unipc" or "euler") for one trajectory over `sigmas`."""
    if name not in SOLVERS:
        raise ConfigurationError(f"Unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}.")
    return SOLVERS[name](sigmas)
