"""Wan2.1 T2V-1.3B on the CPU in float32, ours vs diffusers, same random weights and same inputs.

Measured, each in its own fresh process (so that peaks never mix):

* one DiT forward on a 17-frame 192x320 clip (latent [1, 16, 5, 24, 40], 512 text tokens): wall time and peak RSS;
* one VAE decode of that latent to [1, 3, 17, 192, 320]: wall time and peak RSS;
* fp8 weight storage: our DiT loaded in bf16 vs the same model after `quantize_module_linears` (e4m3, one scale
  per tensor): weight bytes, and the output error of the fp8 DiT against the bf16 one.

Memory is the RSS increase over the RSS right after the model is loaded (VmHWM reset via /proc/self/clear_refs),
i.e. what the forward / decode itself needs; the absolute peak is printed too. Time is the best of `--repeat` runs.
diffusers models (WanTransformer3DModel, AutoencoderKLWan with the Wan 2.1 config) are built on meta and filled by
the same streamed loader through the repository's key maps, so both sides compute with identical weights.

    python bench/wan.py               # real sizes: ~6 GB DiT weights per process
    python bench/wan.py --repeat 3 --steps 2
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

from _measure import gb, ratio, run_child, table, timed, write_result
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.loading import load_module
from videosdgx.runtime.quantized_linear import QuantizedLinear, quantize_module_linears
from videosdgx.wan.keys import to_diffusers_key
from videosdgx.wan.transformer import WAN_PRESETS, WanConfig, WanModel
from videosdgx.wan.vae import WAN21_VAE, WanVAE21, WanVAE21Config
from videosdgx.wan.vae_keys import official_to_diffusers

log = logging.getLogger("bench.wan")

SCRIPT = Path(__file__).resolve()
DIT = WAN_PRESETS["wan2.1-t2v-1.3b"]
LATENT = (1, 16, 5, 24, 40)  # 17 frames of 192x320
TINY_DIT = WanConfig(dim=128, ffn_dim=256, num_heads=2, num_layers=2, in_dim=16, out_dim=16, text_dim=32,
                     freq_dim=32)
TINY_VAE = dataclasses.replace(WAN21_VAE, dim=8)
TINY_LATENT = (1, 16, 2, 4, 6)
TIMESTEPS = (999.0, 750.0, 500.0, 250.0)
DIT_TIME_GOAL, VAE_PEAK_GOAL, FP8_BYTES_EXPECTED = 1.0, 0.7, 0.5
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CHILDREN = ("generate", "dit-ours", "dit-diffusers", "vae-ours", "vae-diffusers", "fp8")
PARTS = ("dit", "vae", "fp8")


@dataclasses.dataclass(frozen=True)
class Setup:
    dit: WanConfig
    vae: WanVAE21Config
    latent: tuple[int, ...]
    folder: Path

    @property
    def dit_file(self) -> Path:
        return self.folder / "wan_dit.safetensors"

    @property
    def vae_file(self) -> Path:
        return self.folder / "wan_vae.safetensors"


def random_weights(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Weights with unit-scale activations: matrices / sqrt(fan_in), norm gains near 1, small biases."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=generator)
        if name.endswith(("gamma", "norm_q.weight", "norm_k.weight", "norm3.weight")):
            tensors[name] = 1 + 0.1 * noise
        elif name.endswith("modulation"):
            tensors[name] = 0.1 * noise
        elif len(shape) >= 2:
            tensors[name] = noise / shape[1:].numel() ** 0.5
        else:
            tensors[name] = 0.02 * noise
    return tensors


def generate(setup: Setup) -> None:
    from safetensors.torch import save_file

    for file, build, seed in ((setup.dit_file, lambda: WanModel(setup.dit), 0),
                              (setup.vae_file, lambda: WanVAE21(setup.vae), 1)):
        with torch.device("meta"):
            shapes = {name: t.shape for name, t in build().state_dict().items()}
        save_file(random_weights(shapes, seed), file)


def inputs(setup: Setup) -> dict[str, torch.Tensor]:
    """The same latent, timestep and text states for every process."""
    generator = torch.Generator().manual_seed(42)
    return {
        "x": torch.randn(setup.latent, generator=generator),
        "context": torch.randn(1, setup.dit.text_len, setup.dit.text_dim, generator=generator),
        "z": torch.randn(setup.latent, generator=generator),  # normalised latents, as the DiT produces them
    }


def assert_materialised(module: nn.Module) -> None:
    meta = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if meta:
        raise RuntimeError(f"tensors left on meta after loading: {meta[:5]}")


def load_ours_dit(setup: Setup, dtype: torch.dtype = torch.float32) -> WanModel:
    with torch.device("meta"):
        model = WanModel(setup.dit)
    return load_module(model, open_checkpoint(setup.dit_file), dtype=dtype)


def load_diffusers_dit(setup: Setup) -> nn.Module:
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    cfg = setup.dit
    with torch.device("meta"):
        model = WanTransformer3DModel(
            patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
            in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
            ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=cfg.eps, rope_max_seq_len=cfg.rope_max_positions,
        )
    model.rope = WanRotaryPosEmbed(cfg.head_dim, cfg.patch_size, cfg.rope_max_positions)  # non-persistent tables
    load_module(model, open_checkpoint(setup.dit_file), dtype=torch.float32, key_map=to_diffusers_key)
    assert_materialised(model)
    return model


def load_ours_vae(setup: Setup) -> WanVAE21:
    with torch.device("meta"):
        model = WanVAE21(setup.vae)
    return load_module(model, open_checkpoint(setup.vae_file), dtype=torch.float32)


def load_diffusers_vae(setup: Setup) -> nn.Module:
    from diffusers import AutoencoderKLWan

    cfg = setup.vae
    with torch.device("meta"):
        model = AutoencoderKLWan(
            base_dim=cfg.dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult), num_res_blocks=cfg.num_res_blocks,
            temperal_downsample=list(cfg.temporal_downsample), latents_mean=list(cfg.latents_mean),
            latents_std=list(cfg.latents_std),
        )
    checkpoint = open_checkpoint(setup.vae_file)
    official_of = official_to_diffusers({key: key for key in checkpoint.keys()})
    load_module(model, checkpoint, dtype=torch.float32, key_map={v: k for k, v in official_of.items()}.get)
    assert_materialised(model)
    return model


def dit_forward(model: nn.Module, x: torch.Tensor, context: torch.Tensor, steps: int, diffusers: bool) -> torch.Tensor:
    """`steps` DiT evaluations (a sampling loop's worth, velocity discarded but the last)."""
    for step in range(steps):
        t = torch.tensor([TIMESTEPS[step % len(TIMESTEPS)]])
        if diffusers:
            out = model(hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False)[0]
        else:
            out = model(x, t, context)
    return out


def vae_decode(model: nn.Module, z: torch.Tensor, config: WanVAE21Config, diffusers: bool) -> torch.Tensor:
    if not diffusers:
        return model.decode(z)
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)
    return model.decode(z * std + mean, return_dict=False)[0]  # diffusers leaves (de)normalisation to pipelines


def relative_errors(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    diff = (out.double() - ref.double()).abs()
    return {"max": (diff.max() / ref.abs().max()).item(), "mean": (diff.mean() / ref.abs().mean()).item()}


def state_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def cast_unquantized(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast every float tensor except the fp8 storage and scales of `QuantizedLinear`s (their bias included)."""
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            if module.bias is not None:
                module.bias = nn.Parameter(module.bias.to(dtype), requires_grad=False)
            continue
        for name, param in module.named_parameters(recurse=False):
            setattr(module, name, nn.Parameter(param.to(dtype), requires_grad=False))


def fp8_comparison(setup: Setup, x: torch.Tensor, context: torch.Tensor, compute: torch.dtype) -> dict:
    """bf16 weights vs fp8 weights (quantize_module_linears, as `load_model_file(weight_format="fp8_e4m3fn")`)."""
    model = load_ours_dit(setup, torch.bfloat16)
    bf16_bytes = state_bytes(model)
    reference = dit_forward(model.to(compute), x, context, 1, diffusers=False)
    del model
    model = load_ours_dit(setup, torch.bfloat16)
    converted = quantize_module_linears(model, torch.float8_e4m3fn)
    fp8_bytes = state_bytes(model)
    cast_unquantized(model, compute)
    out = dit_forward(model, x, context, 1, diffusers=False)
    return {"bf16_bytes": bf16_bytes, "fp8_bytes": fp8_bytes, "converted": len(converted),
            "error": relative_errors(out.float(), reference.float())}


def child(args: argparse.Namespace, setup: Setup) -> None:
    if args.child == "generate":
        generate(setup)
        write_result(args.result, {})
        return
    data = inputs(setup)
    result: dict = {}
    with torch.inference_mode():
        if args.child == "fp8":
            result = fp8_comparison(setup, data["x"], data["context"], COMPUTE_DTYPES[args.fp8_compute])
        elif args.child.startswith("dit-"):
            diffusers = args.child == "dit-diffusers"
            model = load_diffusers_dit(setup) if diffusers else load_ours_dit(setup)
            out, result["spans"] = timed(lambda: dit_forward(model, data["x"], data["context"], args.steps,
                                                             diffusers), args.repeat)
        else:
            diffusers = args.child == "vae-diffusers"
            model = load_diffusers_vae(setup) if diffusers else load_ours_vae(setup)
            out, result["spans"] = timed(lambda: vae_decode(model, data["z"], setup.vae, diffusers), args.repeat)
        if "spans" in result:
            torch.save(out.float().clone(), setup.folder / f"{args.child}.pt")
            result["weights"] = state_bytes(model)
            result["shape"] = list(out.shape)
    write_result(args.result, result)


def summary(run: dict) -> dict[str, float]:
    spans = run["spans"]
    return {"seconds": min(s["seconds"] for s in spans), "first": spans[0]["seconds"],
            "increase": max(s["peak"] - s["baseline"] for s in spans), "peak": max(s["peak"] for s in spans)}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def comparison_lines(part: str, runs: dict[str, dict], error: dict[str, float]) -> list[str]:
    ours, ref = summary(runs[f"{part}-ours"]), summary(runs[f"{part}-diffusers"])
    rows = [[side, f"{s['seconds']:.2f}", f"{s['first']:.2f}", gb(s["increase"]), gb(s["peak"]),
             gb(runs[f"{part}-{side}"]["weights"])] for side, s in (("ours", ours), ("diffusers", ref))]
    rows.append(["ours/diffusers", ratio(ours["seconds"], ref["seconds"]), ratio(ours["first"], ref["first"]),
                 ratio(ours["increase"], ref["increase"]), ratio(ours["peak"], ref["peak"]), ""])
    if part == "dit":
        value = ours["seconds"] / ref["seconds"]
        goal = f"DiT time ours/diffusers <= {DIT_TIME_GOAL}: {value:.3f} {verdict(value <= DIT_TIME_GOAL)}"
    else:
        value = ours["increase"] / ref["increase"]
        goal = (f"VAE decode peak memory (increase) ours/diffusers <= {VAE_PEAK_GOAL}: {value:.3f} "
                f"{verdict(value <= VAE_PEAK_GOAL)}")
    title = "DiT forward" if part == "dit" else "VAE decode"
    return [
        f"{title}; output max |ours - diffusers| / max |diffusers| = {error['max']:.2e} (same weights, inputs):",
        table(["side", "best s", "first s", "increase GB", "peak GB", "weights GB"], rows),
        f"Goal: {goal}",
        "",
    ]


def fp8_lines(fp8: dict, compute: str) -> list[str]:
    value = fp8["fp8_bytes"] / fp8["bf16_bytes"]
    return [
        f"fp8 weight storage (our DiT; {fp8['converted']} Linears to float8_e4m3fn, per-tensor scale), output vs "
        f"the bf16-weight DiT, compute in {compute}:",
        table(["weights", "bytes GB", "ratio to bf16", "rel. max abs err", "rel. mean abs err"], [
            ["bf16", gb(fp8["bf16_bytes"]), "1.000", "", ""],
            ["fp8", gb(fp8["fp8_bytes"]), f"{value:.3f}", f"{fp8['error']['max']:.3e}",
             f"{fp8['error']['mean']:.3e}"],
        ]),
        f"Goal: fp8/bf16 DiT weight bytes ~{FP8_BYTES_EXPECTED}: {value:.3f} "
        f"{verdict(value <= FP8_BYTES_EXPECTED + 0.05)}",
    ]


def report(runs: dict[str, dict], errors: dict[str, dict], args: argparse.Namespace, setup: Setup) -> str:
    lines = [
        f"Wan2.1 T2V-1.3B {'TINY config' if args.tiny else 'real config'} (DiT dim {setup.dit.dim}, "
        f"{setup.dit.num_layers} blocks; VAE dim {setup.vae.dim}), random weights, float32, CPU, "
        f"{torch.get_num_threads()} threads. Latent {'x'.join(map(str, setup.latent))}, {setup.dit.text_len} text "
        f"tokens; DiT: {args.steps} forward(s) per run; best of {args.repeat} runs (and the first run).",
        "Memory: RSS per process (/proc/self/status). 'increase' = peak RSS during the forward/decode minus RSS "
        "after loading; 'peak' = absolute peak RSS of the process during the measurement.",
        "",
    ]
    for part in ("dit", "vae"):
        if part in errors:
            lines += comparison_lines(part, runs, errors[part])
    if "fp8" in runs:
        lines += fp8_lines(runs["fp8"], args.fp8_compute)
    return "\n".join(lines).rstrip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1, help="DiT forwards per timed run (default 1)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per measurement, best reported (2)")
    parser.add_argument("--fp8-compute", choices=COMPUTE_DTYPES, default="float32",
                        help="compute dtype of the fp8-vs-bf16 comparison (float32: this CPU's bf16 matmul is slow)")
    parser.add_argument("--only", choices=PARTS, nargs="+", default=list(PARTS), help="parts to run (all)")
    parser.add_argument("--tiny", action="store_true", help="tiny DiT / VAE and latent (smoke test)")
    parser.add_argument("--workdir", default=None, help="where the temporary weights go (default: $TMPDIR)")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (or, with the hidden --child, one measurement). Returns the runs and the report."""
    args = parse_args(argv)
    if args.child:
        child(args, make_setup(args, Path(args.folder)))
        return {}
    passed = ["--steps", str(args.steps), "--repeat", str(args.repeat), "--fp8-compute", args.fp8_compute]
    passed += ["--tiny"] if args.tiny else []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="videosdgx-bench-wan-") as tmp:
        setup = make_setup(args, Path(tmp))
        result = setup.folder / "result.json"
        runs = {}
        for name in [c for c in CHILDREN if c == "generate" or c.split("-")[0] in args.only]:
            log.info("running: %s", name)
            runs[name] = run_child(SCRIPT, [*passed, "--child", name, "--folder", tmp], result)
        errors = {part: relative_errors(torch.load(setup.folder / f"{part}-ours.pt"),
                                        torch.load(setup.folder / f"{part}-diffusers.pt"))
                  for part in ("dit", "vae") if part in args.only}
    del runs["generate"]
    text = report(runs, errors, args, setup)
    log.info("\n%s", text)
    return {"runs": runs, "errors": errors, "report": text}


def make_setup(args: argparse.Namespace, folder: Path) -> Setup:
    if args.tiny:
        return Setup(TINY_DIT, TINY_VAE, TINY_LATENT, folder)
    return Setup(DIT, WAN21_VAE, LATENT, folder)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
