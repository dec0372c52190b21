"""One LTX-2 19B DiT block (real widths: video 32 x 128, audio 32 x 64, FF x4) on the CPU, ours vs diffusers.

Both sides are the whole AV transformer with `num_layers=1` (so the block runs with its real inputs: AdaLN
modulations, RoPE tables, projected text contexts), the same random weights (ours generated under the official
names, mapped to diffusers' through videosdgx.ltx2.keys) and the same inputs: a 121-frame 256x384 clip's latent
(16 x 8 x 12 = 1536 video tokens), its 121 audio latents, 128 text tokens, T2V timesteps. Each side runs in its own
fresh process (bench/_measure.py): wall time (best of `--repeat`) and the peak RSS increase of one forward over
the RSS after loading. Goal: ours <= 1.0x diffusers in time and in memory.

    python bench/ltx2_dit.py [--repeat 2] [--dtype float32|bfloat16] [--tiny] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path

import torch

from _measure import Span, gb, ratio, run_child, table, write_result
from videosdgx.ltx2.config import LTX2Config
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.rope import audio_positions, video_positions
from videosdgx.ltx2.transformer import LTX2Model, Modality
from videosdgx.testing.ltx2 import random_dit_state, tiny_dit_config

log = logging.getLogger("bench.ltx2_dit")

SCRIPT = Path(__file__).resolve()
BLOCK_19B = dataclasses.replace(LTX2Config(), num_layers=1)
VIDEO_GRID, AUDIO_TOKENS, TEXT_TOKENS, FPS = (16, 8, 12), 121, 128, 24.0
TINY_GRID, TINY_AUDIO, TINY_TEXT = (2, 2, 3), 5, 8
TIME_GOAL, MEMORY_GOAL = 1.0, 1.0
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--tiny", action="store_true", help="toy widths (smoke test)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", choices=("ours", "diffusers"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def sizes(args: argparse.Namespace) -> tuple[LTX2Config, tuple[int, int, int], int, int]:
    if args.tiny:
        return dataclasses.replace(tiny_dit_config(), num_layers=1), TINY_GRID, TINY_AUDIO, TINY_TEXT
    return BLOCK_19B, VIDEO_GRID, AUDIO_TOKENS, TEXT_TOKENS


def inputs(cfg: LTX2Config, grid: tuple[int, int, int], audio_tokens: int, text: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(42)
    return {
        "video": torch.randn(1, grid[0] * grid[1] * grid[2], cfg.in_channels, generator=g),
        "audio": torch.randn(1, audio_tokens, cfg.audio_in_channels, generator=g),
        "video_context": torch.randn(1, text, cfg.caption_channels, generator=g),
        "audio_context": torch.randn(1, text, cfg.caption_channels, generator=g),
        "sigma": torch.tensor([0.7]),
    }


def build_ours(cfg: LTX2Config, dtype: torch.dtype) -> LTX2Model:
    model = LTX2Model(cfg, cross_timestep="cross")
    model.load_state_dict(random_dit_state(cfg, seed=0))
    return model.to(dtype).eval()


def build_diffusers(cfg: LTX2Config, dtype: torch.dtype):
    from diffusers import LTX2VideoTransformer3DModel

    model = LTX2VideoTransformer3DModel(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim, cross_attention_dim=cfg.cross_attention_dim,
        audio_in_channels=cfg.audio_in_channels, audio_out_channels=cfg.audio_out_channels,
        audio_num_attention_heads=cfg.audio_num_heads, audio_attention_head_dim=cfg.audio_head_dim,
        audio_cross_attention_dim=cfg.audio_cross_attention_dim, num_layers=cfg.num_layers,
        caption_channels=cfg.caption_channels, rope_type=cfg.rope_type, rope_double_precision=cfg.rope_float64,
        cross_attn_timestep_scale_multiplier=cfg.av_ca_timestep_scale_multiplier,
    )
    model.load_state_dict({to_diffusers_key(k): v for k, v in random_dit_state(cfg, seed=0).items()})
    return model.to(dtype).eval()


def child(args: argparse.Namespace) -> None:
    cfg, grid, audio_tokens, text = sizes(args)
    dtype = DTYPES[args.dtype]
    x = inputs(cfg, grid, audio_tokens, text)
    if args.child == "ours":
        model = build_ours(cfg, dtype)
        video = Modality(x["video"].to(dtype), x["sigma"][:, None], x["sigma"], video_positions(*grid, FPS),
                         x["video_context"].to(dtype))
        audio = Modality(x["audio"].to(dtype), x["sigma"][:, None], x["sigma"], audio_positions(audio_tokens),
                         x["audio_context"].to(dtype))

        def forward():
            return model(video, audio)
    else:
        model = build_diffusers(cfg, dtype)

        def forward():
            return model(hidden_states=x["video"].to(dtype), audio_hidden_states=x["audio"].to(dtype),
                         encoder_hidden_states=x["video_context"].to(dtype),
                         audio_encoder_hidden_states=x["audio_context"].to(dtype), timestep=x["sigma"] * 1000,
                         sigma=x["sigma"] * 1000, num_frames=grid[0], height=grid[1], width=grid[2], fps=FPS,
                         audio_num_frames=audio_tokens, use_cross_timestep=True, return_dict=False)

    spans = []
    with torch.no_grad():
        for _ in range(args.repeat):
            with Span() as span:
                out = forward()
            spans.append(span)
    torch.save([o.float() for o in out], Path(args.folder) / f"{args.child}.pt")
    best = min(spans, key=lambda s: s.seconds)
    write_result(args.result, {"seconds": best.seconds, "peak_increase": max(s.peak_increase for s in spans),
                               "shapes": [list(o.shape) for o in out]})


def report(runs: dict, errors: list[float], args: argparse.Namespace) -> str:
    ours, ref = runs["ours"], runs["diffusers"]
    rows = [["time (s)", f"{ours['seconds']:.3f}", f"{ref['seconds']:.3f}", ratio(ours["seconds"], ref["seconds"])],
            ["peak RSS increase (GB)", gb(ours["peak_increase"]), gb(ref["peak_increase"]),
             ratio(ours["peak_increase"], ref["peak_increase"])]]
    return "\n".join([
        f"LTX-2 DiT block, {'tiny' if args.tiny else '19B widths'}, {args.dtype}, CPU, best of {args.repeat}",
        table(["", "ours", "diffusers", "ours/diffusers"], rows),
        f"output relative error (video, audio): {errors[0]:.2e}, {errors[1]:.2e}",
        f"Goal: ours/diffusers <= {TIME_GOAL} (time) and <= {MEMORY_GOAL} (memory).",
    ])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    passed = ["--repeat", str(args.repeat), "--dtype", args.dtype] + (["--tiny"] if args.tiny else [])
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="videosdgx-bench-ltx2-") as tmp:
        result = Path(tmp) / "result.json"
        runs = {name: run_child(SCRIPT, [*passed, "--child", name, "--folder", tmp], result)
                for name in ("ours", "diffusers")}
        ours, ref = torch.load(Path(tmp) / "ours.pt"), torch.load(Path(tmp) / "diffusers.pt")
    errors = [((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, ref)]
    text = report(runs, errors, args)
    log.info("\n%s", text)
    return {"runs": runs, "errors": errors, "report": text}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
