"""The Wan sampler node: seeded flow-matching sampling with CFG, expert switching, progress and Cancel."""

from __future__ import annotations

import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.memory import check_memory
from videosdgx.runtime.quantized_linear import compute_dtype
from videosdgx.sampling import SOLVERS
from videosdgx.wan.lora import expert_loras_applied
from videosdgx.wan.memory import latent_tokens, sampling_activations
from videosdgx.wan.sampler import SamplingSettings, custom_sigmas, sample_wan

from ._comfy import check_interrupt, io, latent_previewer, progress, torch_device
from ._loaders import check_choice
from ._model_manager import use
from .wan_types import CATEGORY, WanConditioning, WanConditioningType, WanExperts, WanModelType

MAX_SEED = 0xFFFFFFFFFFFFFFFF
LIGHTNING = "1.0, 0.9375, 0.833333, 0.625, 0.0"


class WanSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanSampler",
            display_name="Wan Sampler (VideosDGX)",
            category=CATEGORY,
            description="Denoises a Wan video latent (UniPC or Euler flow matching with classifier-free guidance).",
            inputs=[
                WanModelType.Input("model"),
                WanConditioningType.Input("conditioning"),
                io.Latent.Input("latent"),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=50, min=1, max=200, step=1),
                io.Float.Input("cfg", default=5.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Guidance scale (of the high-noise expert for Wan2.2 A14B); 1 disables it."),
                io.Float.Input("cfg_low_noise", default=3.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Guidance scale of the Wan2.2 A14B low-noise expert; unused otherwise."),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Sigma shift: 5 for most Wan models, 3 for Wan2.1 I2V 480p."),
                io.Combo.Input("sampler", options=list(SOLVERS), default="unipc"),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="Below 1 the latent is partly noised and refined (video-to-video)."),
                io.String.Input("sigmas", default="", optional=True,
                                tooltip="Custom sigma list falling to 0, replacing steps and shift, e.g. Wan2.2 "
                                        f"Lightning: {LIGHTNING}. Empty: the usual schedule."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, sampler: str = "unipc", sigmas: str = "") -> bool | str:
        try:
            parse_sigmas(sigmas)
        except ConfigurationError as error:
            return str(error)
        return check_choice("sampler", sampler, SOLVERS)

    @classmethod
    def execute(cls, model: WanExperts, conditioning: WanConditioning, latent: dict, seed: int, steps: int,
                cfg: float, cfg_low_noise: float, shift: float, sampler: str, denoise: float,
                sigmas: str = "") -> io.NodeOutput:
        samples = latent["samples"]
        first = model.models[0]
        guided = cfg != 1.0 or (model.boundary is not None and cfg_low_noise != 1.0)
        activations = sampling_activations(first.cfg, latent_tokens(samples.shape),
                                           compute_dtype(first.head.head).itemsize, batch=2 if guided else 1)
        use(model, memory_required=activations)
        check_memory(activations, torch_device(), f"Wan sampling of a {list(samples.shape[2:])} latent")
        grid = parse_sigmas(sigmas)
        steps = steps if grid is None else len(grid) - 1
        settings = SamplingSettings(steps=steps, shift=shift, guidance=cfg, seed=seed, solver=sampler,
                                    guidance_low=cfg_low_noise, boundary=model.boundary, denoise=denoise, sigmas=grid)
        bar = progress(steps)
        preview = latent_previewer(model.latent_format)

        def on_step(step: int, total: int, x: torch.Tensor) -> None:
            check_interrupt()
            bar.update_absolute(step + 1, total, preview(x))

        check_interrupt()
        with expert_loras_applied(model.models, model.loras):
            result = sample_wan(list(model.models), conditioning.text, tuple(samples.shape[1:]), settings,
                                conditioning.image, init_latents=samples, callback=on_step)
        return io.NodeOutput({"samples": result})


def parse_sigmas(text: str) -> tuple[float, ...] | None:
    """A comma- or space-separated sigma list (None when empty), checked as the sampler will use it."""
    if not text.strip():
        return None
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise ConfigurationError(f"sigmas '{text}' is not a list of numbers; e.g. {LIGHTNING}.") from None
    custom_sigmas(values)
    return values
