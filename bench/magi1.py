"""MAGI-1 chunk step at the real 4.5B width (few layers, random weights, CPU float32): one denoising chunk that
reads a key-value cache of 3 clean chunks, ours vs the official SandAI-org/MAGI-1 modules.

Measured, each in its own fresh process:

* `ours`: the cache is filled by one forward of 3 clean chunks (not measured), then one forward of the 4th chunk
  attending to itself and the 3 cached chunks: wall time (best of `--repeat`) and peak RSS increase;
* `official` (only when $MAGI1_SRC names a MAGI-1 checkout and /work/shared/reference/magi1_cpu_stubs.py, or the
  folder in $MAGI1_STUBS, is importable): the same with `VideoDiTModel` and its `InferenceParams` cache, same weights;
* cache bytes per chunk: ours (what `ChunkKVCache` holds) vs the arithmetic minimum
  `layers * tokens * kv_heads * 2 * head_dim * itemsize`, and the official buffer (sized for the whole video,
  `--video-chunks` chunks, whatever is read).

With `--rounds R` the two children run alternately R times (ours, official, ours, ...), so that a change of the
machine's load hits both sides alike; the table shows each side's best, and the time and peak ratios of every round
(ours / official of the same round) give their spread. Every child runs with `--threads` torch threads (1).

    python bench/magi1.py                     # 4.5B width, 2 layers, 256x256 (1536 tokens per chunk)
    MAGI1_SRC=/path/to/MAGI-1 python bench/magi1.py --layers 2 --repeat 3 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _measure import Span, gb, ratio, run_child, table, write_result
from videosdgx.magi1.cache import ChunkKVCache
from videosdgx.magi1.config import DIT_CONFIGS, MagiDiTConfig
from videosdgx.magi1.transformer import ChunkLayout, MagiDiT
from videosdgx.testing.files import random_like_state_dict

log = logging.getLogger("bench.magi1")
SCRIPT = Path(__file__).resolve()
CACHED = 3
CHILDREN = ("ours", "official")


def config(args: argparse.Namespace) -> MagiDiTConfig:
    if args.tiny:
        return MagiDiTConfig(layers=2, dim=128, ffn_dim=256, heads=8, kv_heads=2, head_dim=16, caption_dim=32,
                             caption_length=800, cond_dim=32)
    return dataclasses.replace(DIT_CONFIGS["4.5B"], layers=args.layers)


def latent_side(args: argparse.Namespace) -> int:
    return 4 if args.tiny else args.size // 8


def inputs(cfg: MagiDiTConfig, side: int, chunks: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(chunks, 800)
    mask[:, :20] = 1
    return {"x": torch.randn(1, 16, 6 * chunks, side, side, generator=g), "t": torch.rand(1, chunks, generator=g),
            "y": torch.randn(chunks, 1, 800, cfg.caption_dim, generator=g), "mask": mask[:, None]}


def weights(cfg: MagiDiTConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        model = MagiDiT(cfg)
    return random_like_state_dict(model, seed=0, std=0.02)


def timed(step, repeat: int) -> tuple[torch.Tensor, dict]:
    """Run `step` `repeat` times: the span of the fastest run and the lowest CPU time of the process (which a busy
    machine distorts less than wall time: with one thread, waiting for a core is not counted)."""
    best, cpu = None, None
    for _ in range(repeat):
        start = time.process_time()
        with Span() as span:
            out = step()
        used = time.process_time() - start
        best = span if best is None or span.seconds < best.seconds else best
        cpu = used if cpu is None else min(cpu, used)
    return out, {"span": best.as_dict(), "cpu_seconds": cpu}


def run_ours(cfg, data, repeat: int) -> dict:
    model = MagiDiT(cfg)
    model.load_state_dict(weights(cfg), assign=True)
    model.eval()
    tokens = 6 * (data["x"].shape[-1] // 2) ** 2
    cache = ChunkKVCache(keep=CACHED)
    sl = slice(0, CACHED)
    with torch.no_grad():
        model(data["x"][:, :, : 6 * CACHED], data["t"][:, sl], data["y"][sl].squeeze(1)[None],
              data["mask"][sl].squeeze(1)[None], ChunkLayout(CACHED, tokens, 0, [(0, c + 1) for c in range(CACHED)],
                                                             cache, cache_chunks=CACHED))
        out, timing = timed(lambda: model(data["x"][:, :, 6 * CACHED:], data["t"][:, CACHED:],
                                          data["y"][CACHED:].squeeze(1)[None], data["mask"][CACHED:].squeeze(1)[None],
                                          ChunkLayout(1, tokens, CACHED, [(0, CACHED + 1)], cache)), repeat)
    return {**timing, "cache_bytes": cache.nbytes(), "shape": list(out.shape), "out": out.flatten()[:4096].tolist()}


def grouped_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
    """flash-attn's GQA on `[B, S, H, D]`: keys and values read in place by their query heads, not copied per head."""
    o = F.scaled_dot_product_attention(q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2), attn_mask=mask,
                                       enable_gqa=k.shape[-2] != q.shape[-2])
    return o.transpose(-3, -2).to(q.dtype)


def run_official(cfg, data, repeat: int, video_chunks: int, attention: str) -> dict:
    sys.path.insert(0, os.environ.get("MAGI1_STUBS", "/work/shared/reference"))
    import magi1_cpu_stubs
    if attention == "grouped":  # the stub's flash-attn functions look `_sdpa` up at call time
        magi1_cpu_stubs._sdpa = grouped_sdpa
    from inference.common import EngineConfig, InferenceParams, MagiConfig, ModelConfig, RuntimeConfig
    from inference.model.dit.dit_model import VideoDiTModel

    torch.Tensor.cuda = lambda self, *a, **k: self
    model_config = ModelConfig(
        model_name="videodit_ardf", num_layers=cfg.layers, hidden_size=cfg.dim, ffn_hidden_size=cfg.ffn_dim,
        num_attention_heads=cfg.heads, num_query_groups=cfg.kv_heads, kv_channels=cfg.head_dim,
        apply_layernorm_1p=True, params_dtype=torch.float32, in_channels=cfg.in_channels,
        out_channels=cfg.out_channels, cond_hidden_ratio=cfg.cond_dim / cfg.dim, caption_channels=cfg.caption_dim,
        caption_max_length=cfg.caption_length, gated_linear_unit=cfg.gated_mlp)
    model = VideoDiTModel(MagiConfig(model_config, RuntimeConfig(), EngineConfig(kv_offload=False)))
    model.load_state_dict(weights(cfg), assign=True)
    model.eval()
    tokens = 6 * (data["x"].shape[-1] // 2) ** 2
    params = InferenceParams(max_batch_size=1, max_sequence_length=video_chunks * tokens)

    def forward(first: int, n: int, ranges, update: bool, **kw):
        params.update_kv_cache = update
        sl = slice(first, first + n)
        return model(data["x"][:, :, 6 * first: 6 * (first + n)], data["t"][:, sl], data["y"][sl],
                     caption_dropout_mask=torch.tensor([False]), xattn_mask=data["mask"][sl],
                     kv_range=torch.tensor(ranges, dtype=torch.int32) * tokens, inference_params=params,
                     range_num=first + n, denoising_range_num=n, slice_point=first, fwd_extra_1st_chunk=False,
                     num_steps=64, chunk_width=6, **kw)

    with torch.no_grad():
        forward(0, CACHED, [(0, c + 1) for c in range(CACHED)], True, extract_prefix_video_feature=True)
        out, timing = timed(lambda: forward(CACHED, 1, [(0, CACHED + 1)], False), repeat)
    cache = sum(t.numel() * t.element_size() for t in params.key_value_memory_dict.values())
    return {**timing, "cache_bytes": cache, "shape": list(out.shape), "out": out.flatten()[:4096].tolist()}


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg = config(args)
    data = inputs(cfg, latent_side(args), CACHED + 1)
    if args.child == "ours":
        result = run_ours(cfg, data, args.repeat)
    else:
        result = run_official(cfg, data, args.repeat, args.video_chunks, args.official_attention)
    write_result(args.result, result)


def official_available() -> bool:
    stubs = Path(os.environ.get("MAGI1_STUBS", "/work/shared/reference")) / "magi1_cpu_stubs.py"
    return bool(os.environ.get("MAGI1_SRC")) and stubs.is_file()


def best(rounds: list[dict]) -> dict:
    """The run of the fastest round (its span, cache and outputs)."""
    return min(rounds, key=lambda run: run["span"]["seconds"])


def peak(run: dict) -> int:
    return run["span"]["peak"] - run["span"]["baseline"]


def spread(values: list[float]) -> str:
    values = sorted(values)
    return f"{values[0]:.3f} / {values[len(values) // 2]:.3f} / {values[-1]:.3f}"


def report(runs: dict[str, list[dict]], cfg: MagiDiTConfig, tokens: int, args: argparse.Namespace) -> str:
    minimum = cfg.layers * tokens * cfg.kv_heads * 2 * cfg.head_dim * 4  # float32
    rows = []
    for name, rounds in runs.items():
        run = best(rounds)
        per_chunk = run["cache_bytes"] / (CACHED if name == "ours" else args.video_chunks)
        rows.append([name, f"{run['span']['seconds']:.3f}", f"{min(r['cpu_seconds'] for r in rounds):.3f}",
                     gb(min(peak(r) for r in rounds)), gb(run["cache_bytes"]), gb(per_chunk),
                     ratio(per_chunk, minimum)])
    text = table(["", "chunk step s (best)", "CPU s (best)", "peak RSS +GB (lowest)", "cache GB", "cache GB / chunk",
                  "/ minimum"], rows)
    if "official" in runs:
        ours, official = runs["ours"], runs["official"]
        time_ratio = min(r["span"]["seconds"] for r in ours) / min(r["span"]["seconds"] for r in official)
        cpu_ratio = min(r["cpu_seconds"] for r in ours) / min(r["cpu_seconds"] for r in official)
        peak_ratio = min(peak(r) for r in ours) / min(peak(r) for r in official)
        out_ours, out_official = best(ours)["out"], best(official)["out"]
        error = max(abs(a - b) for a, b in zip(out_ours, out_official))
        scale = max(abs(a) for a in out_official)
        text += (f"\nours / official (best against best): time {time_ratio:.3f}, CPU time {cpu_ratio:.3f}, "
                 f"peak {peak_ratio:.3f}; "
                 f"max |difference| of the first outputs {error:.2e} (max |output| {scale:.2e})")
        if len(ours) > 1:
            times = [a["span"]["seconds"] / b["span"]["seconds"] for a, b in zip(ours, official)]
            cpus = [a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(ours, official)]
            peaks = [peak(a) / peak(b) for a, b in zip(ours, official)]
            text += (f"\nper round ({len(ours)} rounds, min / median / max): time {spread(times)}, "
                     f"CPU time {spread(cpus)}, peak {spread(peaks)}")
    else:
        text += "\nofficial: skipped (set MAGI1_SRC to a SandAI-org/MAGI-1 checkout to compare)"
    return (f"MAGI-1 chunk step: width {cfg.dim}, {cfg.layers} layers, {tokens} tokens per chunk, {CACHED} cached "
            f"chunks, float32, {args.threads} thread(s), best of {args.repeat} per process, official attention "
            f"stand-in: {args.official_attention}; minimum cache per chunk "
            f"{gb(minimum)} GB (float32)\n" + text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="DiT layers at the 4.5B width (2)")
    parser.add_argument("--size", type=int, default=256, help="square frame size in pixels (256)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs, best reported (2)")
    parser.add_argument("--video-chunks", type=int, default=4, help="chunks the official cache is sized for (4)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of both sides, fresh processes (1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every child (1)")
    parser.add_argument("--official-attention", choices=("expand", "grouped"), default="expand",
                        help="the CPU stand-in for the official flash-attn: the stub's own (keys and values copied "
                             "per query head, default) or grouped-query SDPA reading them in place (as flash-attn)")
    parser.add_argument("--tiny", action="store_true", help="tiny DiT (smoke test)")
    parser.add_argument("--workdir", default=None, help="where the child results go (default: $TMPDIR)")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    passed = ["--layers", str(args.layers), "--size", str(args.size), "--repeat", str(args.repeat),
              "--video-chunks", str(args.video_chunks), "--threads", str(args.threads),
              "--official-attention", args.official_attention] + (["--tiny"] if args.tiny
                                                                                           else [])
    names = ("ours", "official") if official_available() else ("ours",)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="videosdgx-bench-magi1-") as tmp:
        for round_ in range(args.rounds):
            for name in names:
                log.info("round %d: %s", round_ + 1, name)
                runs[name].append(run_child(SCRIPT, [*passed, "--child", name], Path(tmp) / "result.json"))
    cfg = config(args)
    text = report(runs, cfg, 6 * (latent_side(args) // 2) ** 2, args)
    log.info("\n%s", text)
    return {"runs": runs, "report": text}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
