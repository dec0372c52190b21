"""Sampling package: sigma grids and solvers against diffusers, denoise trimming, Wan2.2 expert boundaries,
seeded noise, guidance and the loop."""

import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.sampling import (
    WAN_SIGMA_MAX,
    EulerSolver,
    UniPCSolver,
    boundary_step,
    cfg,
    cfg_forward,
    flow_sigmas,
    make_solver,
    sample,
    seeded_noise,
    shift_sigmas,
    trim_for_denoise,
)

GRIDS = [(1, 5.0), (2, 3.0), (7, 1.0), (10, 5.0), (25, 8.0), (40, 12.0), (50, 16.0)]


def analytic_velocity(x: torch.Tensor, sigma: float, step: int) -> torch.Tensor:
    """A smooth nonlinear stand-in for a DiT."""
    return torch.tanh(1.5 * x) * (1 + sigma) - 0.4 * math.sin(3 * sigma) * x + 0.2 * x**2 * sigma


def diffusers_unipc(steps: int, shift: float, order: int = 2) -> UniPCMultistepScheduler:
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        solver_order=order,
        predict_x0=True,
        solver_type="bh2",
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    wan_unshifted = np.linspace(WAN_SIGMA_MAX, 0.0, steps + 1)[:-1]
    scheduler.set_timesteps(sigmas=wan_unshifted)
    return scheduler


@pytest.mark.parametrize("steps,shift", GRIDS)
def test_flow_sigmas_equal_diffusers_schedulers_on_wan_grid(steps, shift):
    ours = flow_sigmas(steps, shift)
    assert ours.dtype == torch.float64 and ours.shape == (steps + 1,) and ours[-1] == 0
    assert torch.equal(ours.float(), diffusers_unipc(steps, shift).sigmas)

    # FlowMatchEulerDiscreteScheduler casts the given sigmas to float32 before shifting: a few ulp off.
    euler = FlowMatchEulerDiscreteScheduler(shift=shift)
    euler.set_timesteps(sigmas=np.linspace(WAN_SIGMA_MAX, 0.0, steps + 1)[:-1])
    torch.testing.assert_close(ours.float(), euler.sigmas, rtol=0, atol=5e-7)


@pytest.mark.parametrize("steps,shift", GRIDS)
def test_flow_sigmas_equal_diffusers_default_unipc_grid(steps, shift):
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift)
    scheduler.set_timesteps(steps)
    ours = flow_sigmas(steps, shift, sigma_max=1.0, sigma_min=1e-3)
    assert ours[0].item() == 1.0 - 1e-6
    assert torch.equal(ours.float(), scheduler.sigmas)


def test_flow_sigmas_formula_and_bad_steps():
    sigmas = flow_sigmas(4, 3.0)
    unshifted = torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64) * WAN_SIGMA_MAX
    expected = 3.0 * unshifted / (1 + 2.0 * unshifted)
    torch.testing.assert_close(sigmas[:-1], expected, rtol=0, atol=1e-15)
    assert abs(WAN_SIGMA_MAX - 0.999) < 2e-8 and WAN_SIGMA_MAX != 0.999
    with pytest.raises(ConfigurationError, match="steps must be at least 1"):
        flow_sigmas(0, 5.0)
    with pytest.raises(ConfigurationError, match="shift must be positive"):
        shift_sigmas(torch.tensor([0.5]), 0.0)


def test_shift_sigmas_fixes_ends_and_matches_ltx2_exponential_form():
    sigmas = torch.tensor([1.0, 0.7, 0.3, 0.05, 0.0], dtype=torch.float64)
    s = 1.3
    shifted = shift_sigmas(sigmas, math.exp(s))
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    inner = sigmas[1:-1]
    torch.testing.assert_close(shifted[1:-1], math.exp(s) / (math.exp(s) + (1 / inner - 1)), rtol=1e-14, atol=0)
    assert torch.equal(shift_sigmas(sigmas, 1.0), sigmas)


@pytest.mark.parametrize("steps,shift,order", [(10, 5.0, 2), (40, 12.0, 2), (2, 3.0, 2), (7, 3.0, 3), (6, 8.0, 1)])
def test_unipc_trajectory_matches_diffusers_float64(steps, shift, order):
    sigmas = flow_sigmas(steps, shift)
    scheduler = diffusers_unipc(steps, shift, order)
    scheduler.sigmas = sigmas.clone()
    ours = UniPCSolver(sigmas, order=order)
    x_ref = x_ours = seeded_noise((2, 3, 4, 5), seed=1, dtype=torch.float64)
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(sigmas[i])
        x_ref = scheduler.step(analytic_velocity(x_ref, sigma, i), t, x_ref).prev_sample
        x_ours = ours.step(x_ours, analytic_velocity(x_ours, sigma, i), i)
    assert x_ours.dtype == torch.float64
    assert (x_ours - x_ref).abs().max().item() < 1e-12
    assert (x_ours - seeded_noise((2, 3, 4, 5), seed=1, dtype=torch.float64)).abs().max().item() > 0.1


def test_unipc_matches_diffusers_with_its_own_float32_sigmas():
    """diffusers keeps float32 sigmas, so its step coefficients carry float32 rounding (~1e-7 relative);
    over 30 steps that stays far below 1e-5 on O(1) latents."""
    steps, shift = 30, 5.0
    scheduler = diffusers_unipc(steps, shift)
    solver = make_solver("unipc", flow_sigmas(steps, shift))
    x_ref = x_ours = seeded_noise((1, 4, 3, 6, 6), seed=2)
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(scheduler.sigmas[i])
        x_ref = scheduler.step(analytic_velocity(x_ref, sigma, i), t, x_ref).prev_sample
        x_ours = solver.step(x_ours, analytic_velocity(x_ours, sigma, i), i)
    assert x_ours.dtype == torch.float32
    assert (x_ours - x_ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("steps,shift", [(10, 5.0), (30, 8.0)])
def test_euler_trajectory_matches_diffusers(steps, shift):
    """diffusers' Euler step upcasts the sample to float32 only, so its float64 run is float32-accurate:
    ~1e-7 rounding per step, under 1e-5 after 30 steps."""
    sigmas = flow_sigmas(steps, shift)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    scheduler.set_timesteps(sigmas=sigmas[:-1].numpy())
    x_ref = x_ours = seeded_noise((2, 4, 8), seed=3, dtype=torch.float64)
    ours = EulerSolver(sigmas)
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(sigmas[i])
        x_ref = scheduler.step(analytic_velocity(x_ref, sigma, i), t, x_ref).prev_sample
        x_ours = ours.step(x_ours, analytic_velocity(x_ours, sigma, i), i)
    assert (x_ours - x_ref).abs().max().item() < 1e-5


def test_sample_from_start_step_matches_diffusers_begin_index():
    steps, shift, start = 12, 5.0, 4
    sigmas = flow_sigmas(steps, shift)
    scheduler = diffusers_unipc(steps, shift)
    scheduler.sigmas = sigmas.clone()
    scheduler.set_begin_index(start)
    x0 = seeded_noise((3, 5), seed=4, dtype=torch.float64)
    x_ref = x0
    for i in range(start, steps):
        t = scheduler.timesteps[i]
        x_ref = scheduler.step(analytic_velocity(x_ref, float(sigmas[i]), i), t, x_ref).prev_sample
    x_ours = sample(analytic_velocity, x0, sigmas, solver="unipc", start_step=start)
    assert (x_ours - x_ref).abs().max().item() < 1e-12


@pytest.mark.parametrize("solver", ["euler", "unipc"])
def test_exact_flow_lands_on_clean_sample(solver):
    clean = seeded_noise((2, 16, 3, 4, 4), seed=5)
    noise = seeded_noise((2, 16, 3, 4, 4), seed=6)
    if solver == "euler":
        sigmas = shift_sigmas(torch.linspace(1, 0, 21, dtype=torch.float64), 5.0)
    else:
        sigmas = flow_sigmas(20, 5.0)
    x = (1 - float(sigmas[0])) * clean + float(sigmas[0]) * noise
    if solver == "euler":
        assert torch.equal(x, noise)
    out = sample(lambda x, sigma, step: noise - clean, x, sigmas, solver=solver)
    assert (out - clean).abs().max().item() < 1e-5
    assert (x - clean).abs().max().item() > 1.0


def test_callback_sees_every_step_and_can_interrupt():
    sigmas = flow_sigmas(6, 5.0)
    seen = []
    out = sample(analytic_velocity, torch.zeros(2, 3), sigmas, solver="euler",
                 callback=lambda step, total, x: seen.append((step, total, tuple(x.shape))))
    assert seen == [(i, 6, (2, 3)) for i in range(6)]
    assert out.shape == (2, 3)

    class Interrupted(Exception):
        pass

    calls = []

    def velocity(x, sigma, step):
        calls.append(step)
        return analytic_velocity(x, sigma, step)

    def stop_at_two(step, total, x):
        if step == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        sample(velocity, torch.zeros(2, 3), sigmas, callback=stop_at_two)
    assert calls == [0, 1, 2]


def test_sample_rejects_bad_start_step():
    with pytest.raises(ValueError, match=r"start_step must be in \[0, 4\]"):
        sample(analytic_velocity, torch.zeros(1), flow_sigmas(4, 5.0), start_step=5)


def test_trim_for_denoise_follows_comfyui_rule():
    requested = []

    def schedule(n):
        requested.append(n)
        return flow_sigmas(n, 5.0)

    trimmed = trim_for_denoise(schedule, 20, 0.5)
    assert requested == [40]
    assert torch.equal(trimmed, flow_sigmas(40, 5.0)[-21:])
    assert len(trimmed) == 21 and trimmed[-1] == 0

    requested.clear()
    trimmed = trim_for_denoise(schedule, 20, 0.3)
    assert requested == [66]
    assert len(trimmed) == 21 and torch.equal(trimmed, flow_sigmas(66, 5.0)[46:])

    for full in (1.0, 0.99995):
        assert torch.equal(trim_for_denoise(schedule, 20, full), flow_sigmas(20, 5.0))
    for bad in (0.0, -0.2, 1.5):
        with pytest.raises(ConfigurationError, match="denoise must be in"):
            trim_for_denoise(schedule, 20, bad)


@pytest.mark.parametrize("shift,boundary,high_steps", [(12.0, 0.875, 26), (5.0, 0.9, 15)])
def test_boundary_step_wan22_worked_examples(shift, boundary, high_steps):
    sigmas = flow_sigmas(40, shift)
    assert boundary_step(sigmas, boundary) == high_steps
    assert sigmas[high_steps - 1] >= boundary > sigmas[high_steps]
    wan_timesteps = diffusers_unipc(40, shift).timesteps
    assert int((wan_timesteps >= boundary * 1000).sum()) == high_steps


def test_seeded_noise_is_reproducible_and_matches_diffusers():
    a = seeded_noise((2, 16, 3, 8, 8), seed=42)
    assert a.shape == (2, 16, 3, 8, 8) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.equal(a, seeded_noise((2, 16, 3, 8, 8), seed=42))
    assert not torch.allclose(a, seeded_noise((2, 16, 3, 8, 8), seed=43))
    reference = randn_tensor((2, 16, 3, 8, 8), generator=torch.Generator("cpu").manual_seed(42), dtype=torch.float32)
    assert torch.equal(a, reference)
    assert torch.equal(seeded_noise((2, 16, 3, 8, 8), seed=42, dtype=torch.bfloat16), a.to(torch.bfloat16))
    assert abs(a.mean().item()) < 0.1 and abs(a.std().item() - 1) < 0.1


def test_make_solver_names_and_errors():
    sigmas = flow_sigmas(5, 5.0)
    assert isinstance(make_solver("euler", sigmas), EulerSolver)
    assert isinstance(make_solver("unipc", sigmas), UniPCSolver)
    with pytest.raises(ConfigurationError, match="Unknown solver 'dpm'.*unipc, euler"):
        make_solver("dpm", sigmas)
    with pytest.raises(ConfigurationError, match="sigmas in \\(0, 1\\)"):
        UniPCSolver(torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ConfigurationError, match="strictly decreasing"):
        UniPCSolver(torch.tensor([0.5, 0.7, 0.0]))


def test_unipc_requires_consecutive_steps():
    solver = UniPCSolver(flow_sigmas(5, 5.0))
    x = torch.ones(3)
    x = solver.step(x, x, 0)
    with pytest.raises(ValueError, match="expected step 1, got 2"):
        solver.step(x, x, 2)


def test_cfg_and_batched_forward():
    cond, uncond = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(cfg(cond, uncond, 5.0), torch.tensor([6.0, -4.0]))

    batches = []

    def model(x, context, image):
        batches.append(x.shape[0])
        return x * context.sum(dim=(1, 2)).view(-1, 1) + image

    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    image = torch.full((1, 4), 0.5)
    c = {"context": torch.ones(1, 3, 2), "image": image}
    u = {"context": torch.zeros(1, 3, 2), "image": image}
    expected = cfg(x * 6 + 0.5, x * 0 + 0.5, 4.0)
    torch.testing.assert_close(cfg_forward(model, x, c, u, 4.0), expected)
    assert batches == [2]

    batches.clear()
    torch.testing.assert_close(cfg_forward(model, x, c, u, 4.0, batched=False), expected)
    assert batches == [1, 1]

    batches.clear()
    short = {"context": torch.zeros(1, 1, 2), "image": image}
    torch.testing.assert_close(cfg_forward(model, x, c, short, 4.0), expected)
    assert batches == [1, 1]

    batches.clear()
    torch.testing.assert_close(cfg_forward(model, x, c, u, 1.0), x * 6 + 0.5)
    assert batches == [1]


def test_nan_weights_stop_the_run_after_the_first_step_naming_the_file(tmp_path):
    """A DiT whose weights hold NaN is caught when the first step's latents stop being finite, not at the end."""
    import pytest
    import torch

    from videosdgx.runtime.model_files import LoadRequest
    from videosdgx.sampling import NonFiniteLatentsError
    from videosdgx.testing.files import save_safetensors
    from videosdgx.testing.wan import write_wan_models
    from videosdgx.wan.loaders import load_dit
    from videosdgx.wan.sampler import SamplingSettings, sample_wan
    from videosdgx.wan.conditioning import TextConditioning

    files = write_wan_models("wan2.1-t2v-1.3b", tmp_path)
    from safetensors.torch import load_file

    state = load_file(files.dit[0])
    state["head.head.weight"] = torch.full_like(state["head.head.weight"], float("nan"))
    broken = tmp_path / "broken_dit.safetensors"
    save_safetensors(broken, state)
    model = load_dit(broken, LoadRequest()).module
    text = TextConditioning(torch.randn(3, 64), torch.randn(2, 64))
    settings = SamplingSettings(steps=3, shift=5.0, guidance=5.0, seed=0, solver="unipc")
    steps = []
    with pytest.raises(NonFiniteLatentsError, match=r"after sampling step 1: the weights of .*broken_dit\.safetensors"):
        sample_wan([model], text, (16, 1, 4, 4), settings, callback=lambda step, total, x: steps.append(step))
    assert steps == []
