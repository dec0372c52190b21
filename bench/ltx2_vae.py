"""LTX-2 video VAE decode on the CPU in float32, ours (streamed `decode_chunks`) vs diffusers (whole clip).

Both decoders are built at the released widths (19B: 1024 -> 128 channels, three residual x2 upsamplers; or
`--layout 2.3`) and filled with the same seeded random weights through the repository's key map; only the
decoder is built. Each side decodes the same normalised latent in its own fresh process. Reported: best wall
time of `--repeat` runs, the RSS increase during the decode (peak RSS minus RSS after loading) and the absolute
peak, plus the output difference. Goal: our peak increase <= 0.7x diffusers' at equal output.

    python bench/ltx2_vae.py                      # latent 128 x 5 x 8 x 12 -> 33 frames of 256 x 384
    python bench/ltx2_vae.py --frames 3 --size 4 6 --repeat 1
    python bench/ltx2_vae.py --tiny               # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import tempfile
from pathlib import Path

import torch
from _measure import gb, ratio, run_child, table, timed, write_result
from torch import nn

from videosdgx.ltx2.media_keys import diffusers_video_vae_map
from videosdgx.ltx2.video_vae import Block, LTX2VideoVAE, VideoVAEConfig
from videosdgx.testing.ltx2_media import video_vae_config

log = logging.getLogger("bench.ltx2_vae")
SCRIPT = Path(__file__).resolve()
PEAK_GOAL = 0.7
CHILDREN = ("ours", "diffusers")


def released_config(layout: str) -> VideoVAEConfig:
    """The released decoder block lists (the encoder is not built here)."""
    res = lambda n: Block("res", layers=n)  # noqa: E731
    if layout == "19b":
        up = lambda: Block("up", stride=(2, 2, 2), multiplier=2, residual=True)  # noqa: E731
        blocks = (res(5), up(), res(5), up(), res(5), up(), res(5))
        return VideoVAEConfig(encoder_blocks=(), decoder_blocks=blocks, decoder_width=1024)
    blocks = (
        res(2),
        Block("up", stride=(2, 2, 2), multiplier=2),
        res(2),
        Block("up", stride=(2, 2, 2)),
        res(4),
        Block("up", stride=(2, 1, 1), multiplier=2),
        res(6),
        Block("up", stride=(1, 2, 2), multiplier=2),
        res(4),
    )
    return VideoVAEConfig(encoder_blocks=(), decoder_blocks=blocks, decoder_width=1024, decoder_padding="zeros")


def diffusers_kwargs(layout: str, tiny: bool) -> dict:
    """AutoencoderKLLTX2Video arguments whose decoder matches ours (toy: `video_vae_config`)."""
    if layout == "19b":
        decoder = dict(
            decoder_block_out_channels=(16, 32, 64) if tiny else (256, 512, 1024),
            decoder_layers_per_block=(1, 2, 1, 2) if tiny else (5, 5, 5, 5),
        )
    else:
        decoder = dict(
            decoder_block_out_channels=(16, 32, 32, 64) if tiny else (256, 512, 512, 1024),
            decoder_layers_per_block=(1, 2, 1, 1, 2) if tiny else (4, 6, 4, 2, 2),
            decoder_spatio_temporal_scaling=(True,) * 4,
            decoder_inject_noise=(False,) * 5,
            upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
            upsample_residual=(False,) * 4,
            upsample_factor=(2, 2, 1, 2),
            decoder_spatial_padding_mode="zeros",
        )
    return decoder | (dict(latent_channels=8, patch_size=2) if tiny else {})


def weights(names_shapes: list[tuple[str, torch.Size]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded random weights by our (official) names, ~1/sqrt(fan-in) so activations stay moderate."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in sorted(names_shapes):
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        out[name] = torch.randn(shape, generator=g) / math.sqrt(fan_in) * (0.5 if len(shape) > 1 else 0.1)
    return out


def build_ours(cfg: VideoVAEConfig, seed: int) -> LTX2VideoVAE:
    with torch.device("meta"):
        model = LTX2VideoVAE(cfg)
    model.encoder = nn.Module()
    shapes = [(k, v.shape) for k, v in model.state_dict().items() if not k.startswith("latents_")]
    model.to_empty(device="cpu")
    model.load_state_dict(weights(shapes, seed) | stats(cfg.latent_channels), strict=True)
    return model.eval()


def build_diffusers(cfg: VideoVAEConfig, kwargs: dict, seed: int) -> nn.Module:
    from diffusers import AutoencoderKLLTX2Video

    with torch.device("meta"):
        model = AutoencoderKLLTX2Video(decoder_causal=False, **kwargs)
    decoder = model.decoder.to_empty(device="cpu")
    names = diffusers_video_vae_map([f"decoder.{k}" for k in decoder.state_dict()])
    ours = weights([(names[f"decoder.{k}"], v.shape) for k, v in decoder.state_dict().items()], seed)
    decoder.load_state_dict({k: ours[names[f"decoder.{k}"]] for k in decoder.state_dict()}, strict=True)
    return decoder.eval()


def stats(channels: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(99)
    return {
        "latents_mean": torch.randn(channels, generator=g) * 0.1,
        "latents_std": torch.rand(channels, generator=g) + 0.5,
    }


def child(args: argparse.Namespace, folder: Path) -> None:
    cfg = (
        dataclasses.replace(video_vae_config(args.layout), encoder_blocks=())
        if args.tiny
        else released_config(args.layout)
    )
    latents = torch.randn(1, cfg.latent_channels, args.frames, *args.size, generator=torch.Generator().manual_seed(1))
    result: dict = {}
    with torch.inference_mode():
        if args.child == "ours":
            model = build_ours(cfg, seed=7)
            run = lambda: torch.cat(list(model.decode_chunks(latents, args.chunk, args.budget)), dim=2)  # noqa: E731
        else:
            model = build_diffusers(cfg, diffusers_kwargs(args.layout, args.tiny), seed=7)
            s = stats(cfg.latent_channels)
            z = latents * s["latents_std"].view(1, -1, 1, 1, 1) + s["latents_mean"].view(1, -1, 1, 1, 1)
            run = lambda: model(z, causal=False)  # noqa: E731
        out, result["spans"] = timed(run, args.repeat)
    torch.save(out.float(), folder / f"{args.child}.pt")
    result["shape"] = list(out.shape)
    result["weights"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    write_result(args.result, result)


def report(runs: dict, error: float, args: argparse.Namespace) -> str:
    def summary(run: dict) -> tuple[float, int, int]:
        spans = run["spans"]
        return (
            min(s["seconds"] for s in spans),
            max(s["peak"] - s["baseline"] for s in spans),
            max(s["peak"] for s in spans),
        )

    (t_o, inc_o, peak_o), (t_d, inc_d, peak_d) = summary(runs["ours"]), summary(runs["diffusers"])
    value = inc_o / inc_d
    rows = [
        ["ours (streamed)", f"{t_o:.2f}", gb(inc_o), gb(peak_o), gb(runs["ours"]["weights"])],
        ["diffusers (whole)", f"{t_d:.2f}", gb(inc_d), gb(peak_d), gb(runs["diffusers"]["weights"])],
        ["ours/diffusers", ratio(t_o, t_d), ratio(inc_o, inc_d), ratio(peak_o, peak_d), ""],
    ]
    return "\n".join(
        [
            f"LTX-2 video VAE decode ({args.layout} layout, {'TINY' if args.tiny else 'released'} widths), "
            "float32, CPU, "
            f"{torch.get_num_threads()} threads; latent {args.frames} x {args.size[0]} x {args.size[1]} -> "
            f"{runs['ours']['shape']}; ours: decode_chunks(chunk={args.chunk}, budget={args.budget}); "
            f"best of {args.repeat}.",
            f"Output max |ours - diffusers| / max |diffusers| = {error:.2e}.",
            table(["side", "best s", "increase GB", "peak GB", "weights GB"], rows),
            f"Goal: peak increase ours/diffusers <= {PEAK_GOAL}: {value:.3f} "
            f"{'PASS' if value <= PEAK_GOAL else 'FAIL'}",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=("19b", "2.3"), default="19b")
    parser.add_argument("--frames", type=int, default=5, help="latent frames (pixel frames = 8 (F - 1) + 1)")
    parser.add_argument("--size", type=int, nargs=2, default=(8, 12), help="latent height, width")
    parser.add_argument("--chunk", type=int, default=1, help="latent frames per streamed step (ours)")
    parser.add_argument("--budget", type=int, default=2**22, help="elements per streamed step input, ours (2**22)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="toy widths (smoke test)")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args, Path(args.folder))
        return {}
    passed = [
        "--layout",
        args.layout,
        "--frames",
        str(args.frames),
        "--size",
        *map(str, args.size),
        "--chunk",
        str(args.chunk),
        "--budget",
        str(args.budget),
        "--repeat",
        str(args.repeat),
    ] + (["--tiny"] if args.tiny else [])
    with tempfile.TemporaryDirectory(prefix="videosdgx-bench-ltx2-vae-") as tmp:
        runs = {
            name: run_child(SCRIPT, [*passed, "--child", name, "--folder", tmp], Path(tmp) / "result.json")
            for name in CHILDREN
        }
        ours, ref = torch.load(Path(tmp) / "ours.pt"), torch.load(Path(tmp) / "diffusers.pt")
    error = ((ours - ref).abs().max() / ref.abs().max()).item()
    text = report(runs, error, args)
    log.info("\n%s", text)
    return {"runs": runs, "error": error, "report": text}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
