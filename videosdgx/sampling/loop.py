"""The denoising loop shared by every model family."""

from collections.abc import Callable, Sequence

import torch
from torch import nn

from videosdgx.runtime.errors import CheckpointError
from videosdgx.runtime.model_files import weight_source
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
    models: Sequence[nn.Module] = (),
) -> torch.Tensor:
    """Integrate x from `sigmas[start_step]` down to `sigmas[-1]` and return it.

    `velocity_fn(x, sigma, step)` returns the model velocity (noise - x0) at x; the caller composes guidance,
    expert switching and conditioning inside it (the DiT timestep is `sigma·1000`). `solver` is a name for
    `make_solver` or a fresh solver built on `sigmas`. `callback(step, total_steps, x)` runs after every
    step with the updated x; an exception it raises (e.g. an interrupt) stops the loop and propagates.
    Latents that stop being finite end the run at that step, naming the weight files of `models`.
    """
    total_steps = len(sigmas) - 1
    if not 0 <= start_step <= total_steps:
        raise ValueError(f"start_step must be in [0, {total_steps}], got {start_step}.")
    stepper = make_solver(solver, sigmas) if isinstance(solver, str) else solver
    for step in range(start_step, total_steps):
        velocity = velocity_fn(x, float(sigmas[step]), step)
        x = stepper.step(x, velocity, step)
        check_finite(x, step, models)
        if callback is not None:
            callback(step, total_steps, x)
    return x


class NonFiniteLatentsError(CheckpointError):
    """The latents became NaN or infinite while sampling: damaged weights or a dtype that overflows."""


def check_finite(latents: torch.Tensor, step: int, models: Sequence[nn.Module] = ()) -> None:
    """Stop a run whose latents hold NaN / inf after `step`, naming the weight files and what to do."""
    if torch.isfinite(latents).all():
        return
    files = [str(path) for model in models if (source := weight_source(model)) for path in source.files]
    named = f" of {', '.join(dict.fromkeys(files))}" if files else ""
    raise NonFiniteLatentsError(
        f"The latents hold NaN or infinite values after sampling step {step + 1}: the weights{named} produce them. "
        "Check the file(s) with `videosdgx inspect` or `python install.py --verify` (a damaged download), and if "
        "they are fine run in bf16 or fp32 instead of fp16 (--dtype / the loader's weight_dtype), which can overflow."
    )
