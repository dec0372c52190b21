"""Memory plan accuracy: predicted vs measured peak memory per phase of a Wan run on CPU, for several video sizes.

Random-weight files with the real widths of Wan2.1 T2V-1.3B (DiT dim 1536, ffn 8960; UMT5 d_model 4096, d_ff 10240;
the real Wan 2.1 VAE) but fewer layers (`--dit-layers`, `--t5-layers`: activations do not depend on depth) are
written once. For each size a fresh process loads them as `WanPipeline` does (VAE, DiT, then the text encoder),
encodes the prompts, runs one sampling step with classifier-free guidance and decodes, measuring the peak RSS of
each phase (VmHWM, reset between phases) above the RSS before loading. The prediction is `videosdgx.plan.plan_run`
on the same files (headers + `videosdgx.wan.memory`), float32 on CPU.

    python bench/plan.py
    python bench/plan.py --sizes 256x160x5 448x256x9
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch

from _measure import proc_status, reset_peak_rss, run_child, table, write_result
from videosdgx.bundle_files import BundleFiles
from videosdgx.plan import Size, plan_run
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.files import random_like_state_dict, save_safetensors
from videosdgx.testing.wan import tiny_sentencepiece
from videosdgx.text.t5 import T5Config, T5Encoder
from videosdgx.wan.transformer import WAN_PRESETS, WanModel
from videosdgx.wan.vae import WanVAE21, WanVAE21Config

log = logging.getLogger("bench.plan")

SCRIPT = Path(__file__).resolve()
BUNDLE = "wan2.1-t2v-1.3b"
SIZES = ("256x160x5", "384x224x5", "512x288x5")
TINY_SIZES = ("64x64x5", "96x64x5")
GOAL = 0.15
PHASES = ("text encoding", "sampling", "decoding")


def parse_size(text: str) -> Size:
    width, height, frames = (int(v) for v in text.lower().split("x"))
    return Size(width, height, frames)


def write_files(folder: Path, dit_layers: int, t5_layers: int, tiny: bool) -> BundleFiles:
    """Random-weight DiT, UMT5 (with an embedded tokenizer) and VAE files in the official layouts."""
    import dataclasses

    dit = dataclasses.replace(WAN_PRESETS[BUNDLE], num_layers=dit_layers)
    t5 = T5Config(vocab=128, d_model=4096, d_kv=64, heads=64, d_ff=10240, layers=t5_layers)
    vae = WanVAE21Config()
    if tiny:
        dit = dataclasses.replace(dit, dim=256, ffn_dim=512, num_heads=2, text_dim=256)
        t5 = T5Config(vocab=128, d_model=256, d_kv=32, heads=8, d_ff=512, layers=1)
        vae = WanVAE21Config(dim=8)
    with torch.device("meta"):
        models = {"dit": WanModel(dit), "text_encoder": T5Encoder(t5), "vae": WanVAE21(vae)}
    paths = {}
    for role, model in models.items():
        state = random_like_state_dict(model, 0, std=0.02)
        if role == "text_encoder":
            state["spiece_model"] = torch.frombuffer(bytearray(tiny_sentencepiece()), dtype=torch.uint8)
        paths[role] = (save_safetensors(folder / f"{role}.safetensors", state),)
    return BundleFiles(BUNDLE, paths)


def measure(files: BundleFiles, size: Size) -> dict[str, int]:
    """Peak RSS above the pre-loading RSS for each phase of one run (one sampling step)."""
    from videosdgx.wan.conditioning import encode_text, valid_size
    from videosdgx.wan.pipeline import load_wan_pipeline
    from videosdgx.wan.sampler import SamplingSettings, sample_wan
    from videosdgx.wan.variants import wan_variant

    variant = wan_variant(BUNDLE)
    baseline = proc_status()["VmRSS"]
    peaks = {}
    with torch.no_grad():
        reset_peak_rss()
        pipeline = load_wan_pipeline(variant, files, LoadRequest(), low_memory=False)
        text = encode_text(pipeline.text_encoder, "a red fox running through snow", "")
        peaks["text encoding"] = proc_status()["VmHWM"] - baseline
        reset_peak_rss()
        video = valid_size(size.width, size.height, size.frames, variant.size_multiple)
        shape = video.latent_shape(pipeline.experts[0].cfg.out_dim, pipeline.vae.config.spatial_factor)
        settings = SamplingSettings(steps=1, shift=variant.shift, guidance=variant.guidance, seed=0, solver="euler")
        latents = sample_wan(pipeline.experts, text, shape, settings)
        peaks["sampling"] = proc_status()["VmHWM"] - baseline
        reset_peak_rss()
        pipeline.decode(latents)
        peaks["decoding"] = proc_status()["VmHWM"] - baseline
    return peaks


WAN_TITLE = "Wan2.1 T2V-1.3B widths, fewer layers, random weights, float32 on CPU; one sampling step (CFG batch of 2)."


def report(results: dict[str, dict], title: str = WAN_TITLE, phases: tuple[str, ...] = PHASES) -> str:
    """The predicted vs measured table of `results` ({size: {"predicted", "measured", "weights"}}) and the verdict."""
    rows, worst = [], 0.0
    for size, result in results.items():
        for phase in phases:
            predicted, measured = result["predicted"][phase], result["measured"][phase]
            error = predicted / measured - 1
            worst = max(worst, abs(error))
            rows.append([size, phase, f"{result['weights'][phase] / 1e9:.3f}", f"{predicted / 1e9:.3f}",
                         f"{measured / 1e9:.3f}", f"{100 * error:+.1f}"])
    return "\n".join([
        title,
        "measured = peak RSS of the phase (VmHWM, reset between phases) minus the RSS before loading; "
        "predicted = videosdgx.plan.plan_run on the same files (resident weights + the phase's activations).",
        "",
        table(["size", "phase", "weights GB", "predicted GB", "measured GB", "error %"], rows),
        "",
        f"Goal: |predicted / measured - 1| <= {100 * GOAL:.0f} %: worst {100 * worst:.1f} % "
        f"{'PASS' if worst <= GOAL else 'FAIL'}",
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=None, help=f"WIDTHxHEIGHTxFRAMES (default {' '.join(SIZES)})")
    parser.add_argument("--dit-layers", type=int, default=2)
    parser.add_argument("--t5-layers", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="tiny widths and sizes (smoke test)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", choices=("generate", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def bench_files(folder: Path) -> BundleFiles:
    return BundleFiles(BUNDLE, {role: (folder / f"{role}.safetensors",) for role in ("dit", "text_encoder", "vae")})


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child == "generate":
        write_files(Path(args.folder), args.dit_layers, args.t5_layers, args.tiny)
        write_result(args.result, {})
        return {}
    if args.child == "measure":
        write_result(args.result, measure(bench_files(Path(args.folder)), parse_size(args.size)))
        return {}
    sizes = args.sizes or (TINY_SIZES if args.tiny else SIZES)
    common = ["--dit-layers", str(args.dit_layers), "--t5-layers", str(args.t5_layers)] + (
        ["--tiny"] if args.tiny else [])
    results = {}
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="videosdgx-bench-plan-") as tmp:
        folder, result = Path(tmp), Path(tmp) / "result.json"
        run_child(SCRIPT, [*common, "--child", "generate", "--folder", str(folder)], result)
        files = bench_files(folder)
        for text in sizes:
            log.info("measuring %s", text)
            plan = plan_run(BUNDLE, parse_size(text), LoadRequest(), low_memory=False, files=files)
            measured = run_child(SCRIPT, [*common, "--child", "measure", "--folder", str(folder), "--size", text],
                                 result)
            results[text] = {"measured": measured,
                             "predicted": {p.name: p.peak for p in plan.phases},
                             "weights": {p.name: p.weights for p in plan.phases}}
            log.info("%s: measured %s, predicted %s", text, measured, results[text]["predicted"])
    text = report(results)
    log.info("\n%s", text)
    return {"results": results, "report": text}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
