"""Memory plan accuracy for LTX-2: predicted vs measured peak memory per phase of an LTX-2 19B run on CPU.

Random-weight files with the real widths of LTX-2 19B (DiT video 32 x 128 / audio 32 x 64 heads, Gemma 3 12B
widths, 19B connectors, the released video VAE widths and block lists, the released audio VAE, HiFi-GAN vocoder
and x2 upsampler widths) but one DiT block, one Gemma layer, one connector layer and one residual layer per VAE
stage (activations do not depend on depth) are written once. For each size a fresh process loads them as
`load_ltx2_pipeline` does and runs the distilled two-stage pipeline with an image (the plan's worst case): prompt
encoding, one stage-1 step at half size, the x2 latent upsample, the three stage-2 steps, the video and audio
decode; peak RSS (VmHWM, reset between phases) above the RSS before loading. The prediction is
`videosdgx.plan.plan_run` on the same files (headers + `videosdgx.ltx2.memory`), float32 on CPU.

    python bench/plan_ltx2.py
    python bench/plan_ltx2.py --sizes 384x256x9 768x512x9 --files /tmp/ltx2-plan-files
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
from pathlib import Path

import torch

from _measure import proc_status, reset_peak_rss, run_child, table, write_result
from plan import parse_size, report
from videosdgx.bundle_files import BundleFiles
from videosdgx.ltx2.audio_vae import AudioVAEConfig, LTX2AudioVAE
from videosdgx.ltx2.config import LTX2Config
from videosdgx.ltx2.connectors import ConnectorConfig
from videosdgx.ltx2.text_conditioner import TextConditionerConfig
from videosdgx.ltx2.upsampler import LTX2LatentUpsampler, UpsamplerConfig
from videosdgx.ltx2.video_vae import LTX2VideoVAE
from videosdgx.ltx2.vocoder import GeneratorConfig, HifiGanVocoder
from videosdgx.plan import Size, plan_run
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.files import random_like_state_dict, save_safetensors
from videosdgx.testing.ltx2 import write_ltx2_checkpoint
from videosdgx.testing.ltx2_media import video_vae_config
from videosdgx.testing.ltx2_text import (TINY_GEMMA, conditioner_metadata, gemma_sentencepiece, text_side_state,
                                         write_gemma3)
from videosdgx.text.gemma3 import Gemma3Config

log = logging.getLogger("bench.plan_ltx2")

SCRIPT = Path(__file__).resolve()
BUNDLE = "ltx-2-19b-distilled"
SIZES = ("384x256x9", "768x512x9", "768x512x25")
TINY_SIZES = ("128x128x9",)
PHASES = ("text encoding", "sampling", "upsampling", "stage-2 sampling", "decoding")
ROLES = {"checkpoint": "checkpoint.safetensors", "text_encoder": "gemma.safetensors",
         "upsampler": "upsampler.safetensors"}


def media_state(prefix: str, module: torch.nn.Module, seed: int, stats: str | None = None) -> dict:
    """Random weights of a meta-built media model under `prefix`; its latent statistics under `stats`."""
    state = random_like_state_dict(module, seed, std=0.05)
    mean, std = state.pop("latents_mean", None), state.pop("latents_std", None)
    out = {prefix + k: v for k, v in state.items()}
    if stats is not None:
        out[f"{stats}per_channel_statistics.mean-of-means"] = torch.zeros_like(mean)
        out[f"{stats}per_channel_statistics.std-of-means"] = torch.ones_like(std)
    return out


def write_files(folder: Path, tiny: bool) -> BundleFiles:
    """The checkpoint (DiT + text side + media), Gemma (with its tokenizer) and upsampler files."""
    dit = LTX2Config(num_layers=1)
    gemma = dataclasses.replace(Gemma3Config(), vocab=TINY_GEMMA.vocab, layers=1)
    video_vae = dataclasses.replace(video_vae_config("19b", latent_channels=128, patch_size=4), encoder_width=128,
                                    decoder_width=1024)
    audio_vae, vocoder, upsampler = AudioVAEConfig(), GeneratorConfig(), UpsamplerConfig(blocks=1)
    connector = ConnectorConfig(heads=30, head_dim=128, layers=1)
    if tiny:
        dit = LTX2Config(num_heads=2, head_dim=16, audio_num_heads=2, audio_head_dim=8, num_layers=1,
                         cross_attention_dim=32, audio_cross_attention_dim=16, caption_channels=64)
        gemma = dataclasses.replace(TINY_GEMMA, hidden=64, layers=1)
        video_vae = dataclasses.replace(video_vae, encoder_width=8, decoder_width=64)
        audio_vae, vocoder = AudioVAEConfig(base_channels=16), GeneratorConfig(channels=64)
        upsampler = UpsamplerConfig(mid_channels=32, blocks=1)
        connector = ConnectorConfig(heads=2, head_dim=32, layers=1, registers=4)
    text = TextConditionerConfig(gemma.hidden, gemma.layers + 1, False, connector, connector)
    with torch.device("meta"):
        modules = (LTX2VideoVAE(video_vae), LTX2AudioVAE(audio_vae), HifiGanVocoder(vocoder),
                   LTX2LatentUpsampler(upsampler))
    media = {**media_state("vae.", modules[0], 1, stats="vae."),
             **media_state("audio_vae.", modules[1], 2, stats="audio_vae."),
             **media_state("vocoder.", modules[2], 3), **text_side_state(text, 4)}
    ups = random_like_state_dict(modules[3], 5, std=0.05)
    sections = json.loads(conditioner_metadata(text)["config"])
    write_ltx2_checkpoint(folder / ROLES["checkpoint"], dit, parts=media, config_sections=sections)
    del media
    write_gemma3(folder / ROLES["text_encoder"], "comfy", "bf16", cfg=gemma, spiece=gemma_sentencepiece())
    save_safetensors(folder / ROLES["upsampler"], ups)
    return bench_files(folder)


def bench_files(folder: Path) -> BundleFiles:
    return BundleFiles(BUNDLE, {role: (folder / name,) for role, name in ROLES.items()})


def measure(files: BundleFiles, size: Size) -> dict:
    """Peak RSS above the pre-loading RSS for each phase of one two-stage image-to-video run."""
    from videosdgx.job import VideoRequest
    from videosdgx.ltx2.pipeline import decode_audio, decode_video, load_ltx2_pipeline
    from videosdgx.ltx2.variants import ltx2_variant

    baseline = proc_status()["VmRSS"]
    peaks: dict[str, int] = {}

    def phase_ends(name: str) -> None:
        peaks[name] = proc_status()["VmHWM"] - baseline
        reset_peak_rss()

    with torch.no_grad():
        reset_peak_rss()
        pipeline = load_ltx2_pipeline(ltx2_variant(BUNDLE), files, LoadRequest(), low_memory=False)
        image = torch.rand(1, size.height, size.width, 3, generator=torch.Generator().manual_seed(0))
        request = VideoRequest("a red fox running through snow", width=size.width, height=size.height,
                               frames=size.frames, steps=1, image=image)
        positive, negative = pipeline.encode_text(request)
        phase_ends("text encoding")
        stage, upsample = pipeline._stage, pipeline.upsampler.upsample
        stages = iter(("sampling", "stage-2 sampling"))

        def timed_stage(*args, **kwargs):
            out = stage(*args, **kwargs)
            phase_ends(next(stages))
            return out

        def timed_upsample(*args, **kwargs):
            out = upsample(*args, **kwargs)
            phase_ends("upsampling")
            return out

        pipeline._stage, pipeline.upsampler.upsample = timed_stage, timed_upsample
        video, audio, _, _ = pipeline.sample(request, positive, negative)
        decode_video(pipeline.video_vae, video)
        decode_audio(pipeline.audio_vae, pipeline.vocoder, audio)
        phase_ends("decoding")
    return {"peaks": peaks, "low_memory": pipeline.low_memory}


def activation_table(results: dict[str, dict]) -> str:
    """The activations alone (measured: the phase's peak above the planned weights): the weights of this
    one-block model dominate the peaks, so this is where the formulas show."""
    rows = []
    for size, result in results.items():
        for phase in PHASES:
            predicted = result["activations"][phase]
            measured = result["measured"][phase] - result["weights"][phase]
            rows.append([size, phase, f"{predicted / 1e9:.3f}", f"{measured / 1e9:.3f}",
                         f"{predicted / 1e9 - measured / 1e9:+.3f}"])
    return "Activations alone (measured = phase peak - planned weights):\n\n" + table(
        ["size", "phase", "predicted GB", "measured GB", "difference GB"], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=None, help=f"WIDTHxHEIGHTxFRAMES (default {' '.join(SIZES)})")
    parser.add_argument("--tiny", action="store_true", help="tiny widths and sizes (smoke test)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--files", help="keep the written model files in this folder and reuse them (default: "
                                         "written to a temporary folder each run)")
    parser.add_argument("--child", choices=("generate", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child == "generate":
        write_files(Path(args.folder), args.tiny)
        write_result(args.result, {})
        return {}
    if args.child == "measure":
        write_result(args.result, measure(bench_files(Path(args.folder)), parse_size(args.size)))
        return {}
    sizes = args.sizes or (TINY_SIZES if args.tiny else SIZES)
    common = ["--tiny"] if args.tiny else []
    results = {}
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="videosdgx-bench-plan-ltx2-") as tmp:
        result = Path(tmp) / "result.json"
        files_dir = Path(args.files) if args.files else Path(tmp)
        if not all((files_dir / name).is_file() for name in ROLES.values()):
            files_dir.mkdir(parents=True, exist_ok=True)
            run_child(SCRIPT, [*common, "--child", "generate", "--folder", str(files_dir)], result)
        files = bench_files(files_dir)
        for text in sizes:
            log.info("measuring %s", text)
            child = run_child(SCRIPT, [*common, "--child", "measure", "--folder", str(files_dir), "--size", text],
                              result)
            if child["low_memory"]:
                log.warning("%s: memory was tight, the pipeline released Gemma after encoding: planned so", text)
            plan = plan_run(BUNDLE, parse_size(text), LoadRequest(), low_memory=child["low_memory"], files=files)
            results[text] = {"measured": child["peaks"],
                             "predicted": {p.name: p.peak for p in plan.phases},
                             "activations": {p.name: p.activations for p in plan.phases},
                             "weights": {p.name: p.weights for p in plan.phases}}
            log.info("%s: measured %s, predicted %s", text, child["peaks"], results[text]["predicted"])
    title = ("LTX-2 19B widths, one DiT block / Gemma layer / connector layer, random weights, float32 on CPU; "
             "distilled two-stage image-to-video, one stage-1 step.")
    text = report(results, title, PHASES) + "\n\n" + activation_table(results)
    log.info("\n%s", text)
    return {"results": results, "report": text}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
