"""The denoising loop shared by every model family."""

from collections.abc import Callable

import torch

from videosdgx.sampling.solvers import FlowSolver, make_solver

VelocityFn = Callable[[torch.Tensor, float, int], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor], None]


def sample(
    velocity_fn: VelocityFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    solver: str | FlowSolver = "unipc",
    callback: StepCallback | None = None,
    start_step: int = 0,
) -> torch.Tensor:
    """Integrate x from `sigmas[start_step]` down to `sigmas[-1]` and return it.

    `velocity_fn(x, sigma, step)` returns the model velocity (noise - x0) at x; the caller composes guidance,
    expert switching and conditioning inside it (the DiT timestep is `sigma·1000`). `solver` is a name for
    `make_solver` or a fresh solver built on `sigmas`. `callback(step, total_steps, x)` runs after every
    step with the updated x; an exception it raises (e.g. an interrupt) stops the loop and propagates.
    """
    total_steps = len(sigmas) - 1
    if not 0 <= start_step <= total_steps:
        raise ValueError(f"start_step must be in [0, {total_steps}], got {start_step}.")
    stepper = make_solver(solver, sigmas) if isinstance(solver, str) else solver
    for step in range(start_step, total_steps):
        velocity = velocity_fn(x, float(sigmas[step]), step)
        x = stepper.step(x, velocity, step)
        if callback is not None:
            callback(step, total_steps, x)
    return x
