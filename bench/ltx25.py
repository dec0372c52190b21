"""LTX-2.5 video decoders on the CPU in float32: our diffusion decoder (windowed neighbourhood attention) vs our conv
decoder vs diffusers' diffusion decoder (its default flex-attention processor with the dense neighbourhood mask).

The diffusion decoders run at the widths of diffusers' `LTX2VideoDiffusionDecoderModel` defaults (2048 -> 256
channels, 64-wide heads, windows 3x7x7 / 3x5x5, stage 5 11x11x11, one x0 step) or, with `--config ltx-core`,
ltx-core's class defaults (1024 -> 128 channels, stage 5 3x7x7, two v steps), with at most `--blocks` blocks per
stage (the release has 4, 6, 4, 2, 8: full depth is slow on a CPU), both filled with the same seeded random weights
through our key mapping and decoding the same latent with the same noise. The conv decoder is the LTX-2.3 video
VAE's at its released widths (assumed to be 2.5's conv decoder). Each side runs in its own fresh process.
Reported: best wall time of `--repeat` runs, the RSS increase during the decode and the absolute peak, and the
diffusion outputs' difference. diffusers builds its block mask densely over all query x key pairs (2.8 GB in one
allocation for 17 frames of 224 x 224) and its flex attention, unless compiled, materialises every score: it is
wrapped in `torch.compile` here (the first run includes the compilation, `--repeat 2` reports the compiled one);
`--eager-flex` skips compiling (tiny clips only). `--limit-gb` caps each child's address space, so a side that
does not fit fails alone (reported) instead of paging the machine.

    python bench/ltx25.py                         # latent 3 x 7 x 7 -> 17 frames of 224 x 224, 1 block per stage
    python bench/ltx25.py --blocks 2 --repeat 2 --limit-gb 14
    python bench/ltx25.py --config ltx-core --frames 2   # diffusers' dense mask fits at this size
    python bench/ltx25.py --tiny                  # smoke test

`--long` compares our diffusion decoder untiled with tiled (`--tile-frames`, `--tile-size`: pixel frames / pixels,
0 = whole axis; at least the decoder's smallest tiles) on one clip: time and peak as ratios, the largest difference,
and the memory plan's estimate (`memory.diffusion_decode_bytes` with those tiles) beside each measured peak.
`--fit` measures the plan's two constants in one process: stages 1-3 on the whole clip (their peak over the
stage-4 input's bytes: `FEATURE_COPIES`) and one tile's stage 4 + diffusion steps (its peak over stage-5 tokens x
width x dtype size: `TILE_VALUES_PER_TOKEN`).

    python bench/ltx25.py --config ltx-core --long --frames 16 --size 8 8 --tile-frames 32   # 121 frames
    python bench/ltx25.py --config ltx-core --fit --frames 6 --size 8 8 --tile-frames 16 --tile-size 192
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import resource
import tempfile
from pathlib import Path

import torch
from _measure import GB, Span, gb, ratio, run_child, table, timed, write_result

from videosdgx.ltx2.diffusion_decoder import DiffusionDecoderConfig, DiffusionVideoDecoder
from videosdgx.ltx2.diffusion_tiling import TileSizes, overlaps, stage4_grid, tile_groups
from videosdgx.ltx2.memory import diffusion_decode_bytes
from videosdgx.plan import Size
from videosdgx.testing.ltx25_decoder import TINY_DECODER, decoder_state, diffusers_decoder

log = logging.getLogger("bench.ltx25")
SCRIPT = Path(__file__).resolve()
CHILDREN = ("diffusion-ours", "conv-ours", "diffusion-diffusers")
LONG = ("diffusion-ours", "diffusion-tiled")
CONFIGS = {  # the two candidates for the release's header values (not read from a real file yet)
    "diffusers": DiffusionDecoderConfig(
        stage_channels=(2048, 1024, 512, 512, 256), stage_depths=(4, 6, 4, 2, 8), stage5_kernel=(11, 11, 11),
        t_emb_dim=384, steps=1, timestep_scale=1000.0, prediction="x0"),
    "ltx-core": DiffusionDecoderConfig(),  # ltx-core's class defaults: 1024 -> 128 channels, stage 5 3x7x7
}


def decoder_config(args: argparse.Namespace) -> DiffusionDecoderConfig:
    cfg = TINY_DECODER if args.tiny else CONFIGS[args.config]
    return dataclasses.replace(cfg, stage_depths=tuple(min(d, args.blocks) for d in cfg.stage_depths),
                               steps=args.steps or cfg.steps)


def build_ours(cfg: DiffusionDecoderConfig, seed: int) -> DiffusionVideoDecoder:
    with torch.device("meta"):
        model = DiffusionVideoDecoder(cfg)
    model.load_state_dict(decoder_state(cfg, seed), assign=True)
    return model.eval()


def build_conv(args: argparse.Namespace, channels: int):
    from ltx2_vae import build_ours as build_conv_vae
    from ltx2_vae import released_config

    from videosdgx.testing.ltx2_media import video_vae_config

    cfg = video_vae_config("2.3", channels) if args.tiny else released_config("2.3")
    return build_conv_vae(dataclasses.replace(cfg, encoder_blocks=()), seed=7)


def child(args: argparse.Namespace, folder: Path) -> None:
    if args.limit_gb:  # address space: an allocation beyond it fails in this process instead of paging the machine
        limit = int(args.limit_gb * GB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cfg = decoder_config(args)
    latents = torch.randn(1, cfg.latent_channels, args.frames, *args.size, generator=torch.Generator().manual_seed(1))
    result: dict = {}
    with torch.inference_mode():
        if args.child == "fit":
            write_result(args.result, fit(cfg, latents, tiles(args)))
            return
        if args.child == "diffusion-ours":
            model = build_ours(cfg, seed=7)
            run = lambda: model.decode(latents, torch.Generator().manual_seed(2))  # noqa: E731
        elif args.child == "diffusion-tiled":
            model = build_ours(cfg, seed=7)
            run = lambda: torch.cat(list(model.decode_tiles(  # noqa: E731
                latents, tiles(args), torch.Generator().manual_seed(2))), dim=2)
        elif args.child == "conv-ours":
            model = build_conv(args, cfg.latent_channels)
            run = lambda: torch.cat(list(model.decode_chunks(latents)), dim=2)  # noqa: E731
        else:
            import torch.nn.attention.flex_attention as flex

            if args.eager_flex:
                flex._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = True
            else:  # diffusers calls the module's function: compiled, it is block-sparse instead of dense
                flex.flex_attention = torch.compile(flex.flex_attention, dynamic=False)
            state = decoder_state(cfg, seed=7)
            mean, std = (state[k].view(1, -1, 1, 1, 1).clone() for k in ("latents_mean", "latents_std"))
            model = diffusers_decoder(cfg, state)
            del state
            z = latents * std + mean  # diffusers' decoder takes un-normalised latents
            run = lambda: model.decode(z, generator=torch.Generator().manual_seed(2)).sample  # noqa: E731
        out, result["spans"] = timed(run, args.repeat)
    torch.save(out.float(), folder / f"{args.child}.pt")
    result["shape"] = list(out.shape)
    if args.child in LONG:
        sizes = tiles(args) if args.child == "diffusion-tiled" else TileSizes()
        shape = Size(out.shape[4], out.shape[3], out.shape[2])
        result["planned"] = diffusion_decode_bytes(cfg, shape, out.element_size(), sizes)
    result["weights"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    write_result(args.result, result)


def tiles(args: argparse.Namespace) -> TileSizes:
    return TileSizes(args.tile_frames, args.tile_size, args.tile_size)


def fit(cfg: DiffusionDecoderConfig, latents: torch.Tensor, sizes: TileSizes) -> dict:
    """The plan's constants: stages 1-3's peak over the stage-4 input they make, and the first tile's peak (stage 4
    and every step, the stage-4 input already resident) over its stage-5 tokens x width x dtype size."""
    model = build_ours(cfg, seed=7)
    mean, std = (t.view(1, -1, 1, 1, 1) for t in (model.latents_mean, model.latents_std))
    z = latents * std + mean
    grid = stage4_grid(cfg, tuple(z.shape[2:]))
    tile = tile_groups(cfg, grid, sizes)[0][0]
    frames = (z.shape[2] - 1) * cfg.temporal_factor + 1
    noise = torch.randn(1, cfg.out_channels, frames, z.shape[3] * cfg.spatial_factor, z.shape[4] * cfg.spatial_factor)
    with Span() as first:
        features = model.features(z)
    with Span() as second:
        out = model.decode_tile(features, tile, noise, None, cfg.steps)
    width = cfg.stage5_channels or cfg.stage_channels[-1]
    tokens = out.shape[2] * (out.shape[3] // cfg.patch_size) * (out.shape[4] // cfg.patch_size)
    return {"feature_copies": first.peak_increase / (features.numel() * features.element_size()),
            "tile_values_per_token": second.peak_increase / (tokens * width * out.element_size()),
            "stage4_input": list(features.shape), "tile": list(out.shape), "seconds": [first.seconds, second.seconds]}


def long_report(runs: dict, error: float | None, args: argparse.Namespace) -> str:
    cfg = decoder_config(args)
    rows, sums = [], {}
    for name, run in runs.items():
        if "failed" in run:
            rows.append([name, "failed", "", "", ""])
            continue
        spans = run["spans"]
        sums[name] = (min(s["seconds"] for s in spans), min(s["peak"] - s["baseline"] for s in spans))
        rows.append([name, f"{sums[name][0]:.2f}", gb(sums[name][1]), gb(run["planned"]),
                     ratio(sums[name][1], run["planned"])])
    if len(sums) == 2:
        (t_u, p_u), (t_t, p_t) = sums["diffusion-ours"], sums["diffusion-tiled"]
        rows.append(["tiled / untiled", ratio(t_t, t_u), ratio(p_t, p_u), "", ""])
    return "\n".join([
        f"LTX-2.5 diffusion decoder ({'TINY' if args.tiny else args.config + ' config'} widths), float32, CPU, "
        f"{torch.get_num_threads()} threads; latent {args.frames} x {args.size[0]} x {args.size[1]} -> "
        f"{runs['diffusion-ours'].get('shape')}; stage depths {cfg.stage_depths}, {cfg.steps} step(s); tiles "
        f"{tiles(args)!r} (0: whole axis, overlaps {overlaps(cfg)}); best of {args.repeat}.",
        "Tiled vs untiled max |difference| / max |untiled| = " + ("n/a" if error is None else f"{error:.2e}") + ".",
        table(["side", "best s", "increase GB", "planned GB", "measured / planned"], rows),
    ])


def report(runs: dict, error: float, args: argparse.Namespace) -> str:
    def summary(run: dict) -> tuple[float, int, int]:
        spans = run["spans"]
        return (min(s["seconds"] for s in spans), min(s["peak"] - s["baseline"] for s in spans),
                min(s["peak"] for s in spans))

    sums = {name: summary(run) for name, run in runs.items() if "failed" not in run}
    rows = [[name, f"{t:.2f}", gb(inc), gb(peak), gb(runs[name]["weights"])] for name, (t, inc, peak) in sums.items()]
    rows += [[name, "failed", "", "", ""] for name, run in runs.items() if "failed" in run]
    pairs = (("diffusion ours/diffusers", "diffusion-ours", "diffusion-diffusers"),
             ("diffusion ours/conv ours", "diffusion-ours", "conv-ours"))
    rows += [[label, ratio(sums[a][0], sums[b][0]), ratio(sums[a][1], sums[b][1]), "", ""]
             for label, a, b in pairs if a in sums and b in sums]
    cfg = decoder_config(args)
    failures = [f"{name} failed: {run['failed']}" for name, run in runs.items() if "failed" in run]
    minimum = cfg.min_latent_size()
    if any(n < m for n, m in zip((args.frames, *args.size), minimum)):
        failures.append(f"The latent is smaller than {minimum} (T, H, W): ours pads it first, as ltx-core does; "
                        "diffusers does not, so the diffusion outputs differ by design at this size.")
    return "\n".join([
        f"LTX-2.5 video decoders ({'TINY' if args.tiny else args.config + ' config'} widths), float32, CPU, "
        f"{torch.get_num_threads()} threads; latent {args.frames} x {args.size[0]} x {args.size[1]} -> "
        f"{runs['diffusion-ours']['shape']}; diffusion: stage depths {cfg.stage_depths}, {cfg.steps} step(s), "
        f"flex {'eager' if args.eager_flex else 'compiled'}; best of {args.repeat}"
        f"{f'; address space limit {args.limit_gb} GB' if args.limit_gb else ''}.",
        "Diffusion output max |ours - diffusers| / max |diffusers| = "
        + ("n/a" if error is None else f"{error:.2e}") + ".",
        table(["side", "best s", "increase GB", "peak GB", "weights GB"], rows),
        *failures,
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=tuple(CONFIGS), default="diffusers", help="diffusion decoder widths")
    parser.add_argument("--frames", type=int, default=3, help="latent frames (pixel frames = 8 (F - 1) + 1; >= 3:"
                        " diffusers refuses fewer than 11 context frames)")
    parser.add_argument("--size", type=int, nargs=2, default=(7, 7), help="latent height, width (>= 7)")
    parser.add_argument("--blocks", type=int, default=1, help="at most this many blocks per stage")
    parser.add_argument("--steps", type=int, default=0, help="diffusion steps (0: the config's)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--eager-flex", action="store_true", help="diffusers' flex attention without compiling")
    parser.add_argument("--limit-gb", type=float, default=0.0, help="address-space limit of each child (0: none)")
    parser.add_argument("--tiny", action="store_true", help="toy widths (smoke test)")
    parser.add_argument("--long", action="store_true", help="ours untiled vs tiled (see the docstring)")
    parser.add_argument("--fit", action="store_true", help="measure the memory plan's constants")
    parser.add_argument("--tile-frames", type=int, default=0, help="tiled side: frames per tile (0: whole)")
    parser.add_argument("--tile-size", type=int, default=0, help="tiled side: pixels per tile side (0: whole)")
    parser.add_argument("--child", choices=(*CHILDREN, "diffusion-tiled", "fit"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args, Path(args.folder))
        return {}
    passed = ["--config", args.config, "--frames", str(args.frames), "--size", *map(str, args.size),
              "--blocks", str(args.blocks), "--steps", str(args.steps), "--repeat", str(args.repeat)]
    passed += ["--tiny"] * args.tiny + ["--eager-flex"] * args.eager_flex
    passed += ["--limit-gb", str(args.limit_gb)] if args.limit_gb else []
    passed += ["--tile-frames", str(args.tile_frames), "--tile-size", str(args.tile_size)]
    with tempfile.TemporaryDirectory(prefix="videosdgx-bench-ltx25-") as tmp:
        if args.fit:
            result = run_child(SCRIPT, [*passed, "--child", "fit", "--folder", tmp], Path(tmp) / "result.json")
            log.info("%s", result)
            return result
        names, pair, write = (LONG, LONG, long_report) if args.long else (
            CHILDREN, ("diffusion-diffusers", "diffusion-ours"), report)
        runs, error = {}, None
        for name in names:
            try:
                runs[name] = run_child(SCRIPT, [*passed, "--child", name, "--folder", tmp], Path(tmp) / "result.json")
            except RuntimeError as failure:  # diffusers' dense mask / scores may not fit: say so, keep the rest
                runs[name] = {"failed": str(failure).strip().splitlines()[-1][:300]}
        if all("failed" not in runs[name] for name in pair):
            ref, other = (torch.load(Path(tmp) / f"{name}.pt") for name in pair)
            error = ((other - ref).abs().max() / ref.abs().max()).item()
    text = write(runs, error, args)
    log.info("\n%s", text)
    return {"runs": runs, "error": error, "report": text}

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
