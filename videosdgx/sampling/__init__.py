"""Flow-matching sampling shared by every model family: sigma grids, solvers, guidance, noise, loop."""

from videosdgx.sampling.guidance import batch_pair, cfg, cfg_forward
from videosdgx.sampling.loop import NonFiniteLatentsError, check_finite, sample
from videosdgx.sampling.noise import seeded_noise
from videosdgx.sampling.schedules import WAN_SIGMA_MAX, boundary_step, flow_sigmas, shift_sigmas, trim_for_denoise
from videosdgx.sampling.solvers import SOLVERS, EulerSolver, FlowSolver, UniPCSolver, make_solver

__all__ = [
    "SOLVERS",
    "WAN_SIGMA_MAX",
    "EulerSolver",
    "FlowSolver",
    "NonFiniteLatentsError",
    "UniPCSolver",
    "batch_pair",
    "boundary_step",
    "cfg",
    "cfg_forward",
    "check_finite",
    "flow_sigmas",
    "make_solver",
    "sample",
    "seeded_noise",
    "shift_sigmas",
    "trim_for_denoise",
]
