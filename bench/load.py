"""Checkpoint loading benchmark: peak resident memory and wall time, our streamed loader vs the naive one.

A random-weight Wan DiT checkpoint (the Wan2.1 T2V-1.3B architecture with as many blocks as fit `--size-gb`) is
written to a temporary folder, then loaded by each method in its own fresh process:

* ours:  `WanModel` built on the meta device, filled by `videosdgx.runtime.loading.load_module` from
  `videosdgx.runtime.checkpoint.open_checkpoint` (memory-mapped, one tensor at a time, file pages released).
* naive: `WanModel` built on the CPU with its default initialisation (default dtype = the file's dtype), then
  `safetensors.torch.load_file(path)` and `model.load_state_dict(state_dict)`; the state dict is dropped after.

Each method runs twice: "cold" right after this file's pages are evicted from the OS page cache
(posix_fadvise DONTNEED on the checkpoint only, nothing global), then "warm" with the file as the cold run left it
in the cache (ours drops the pages it has copied, so its "warm" run reads from disk again). Right after loading,
each child reports how much of the file the page cache still holds (`videosdgx.runtime.page_cache`, mincore(2)):
on unified memory those pages and the loaded weights share one pool.

With `--fp8` two more methods load the same file into float8_e4m3fn Linears (one scale per tensor):

* fp8-stream:     `load_module` into a meta model whose Linears are fp8 shells (`quantize_module_linears` on
  meta): each weight is quantised as it is read, what `load_model_file(weight_format="fp8_e4m3fn")` does now.
* fp8-after-load: `load_module` in the file's dtype, then `quantize_module_linears` (what it did before).

    python bench/load.py                 # 4 GB fp32 checkpoint
    python bench/load.py --size-gb 2 --dtype bfloat16 --fp8
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from _measure import Span, evict_from_page_cache, fsync_tree, gb, ratio, run_child, table, write_result
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.loading import load_module
from videosdgx.runtime.page_cache import resident_fraction
from videosdgx.runtime.quantized_linear import quantize_module_linears
from videosdgx.wan.transformer import WAN_PRESETS, WanConfig, WanModel

log = logging.getLogger("bench.load")

SCRIPT = Path(__file__).resolve()
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
BASE = WAN_PRESETS["wan2.1-t2v-1.3b"]
TINY_BASE = WanConfig(dim=128, ffn_dim=256, num_heads=2, num_layers=1, in_dim=16, out_dim=16, text_dim=64,
                      freq_dim=32)
TINY_SIZE_GB = 0.02
METHODS = ("ours", "naive")
FP8_METHODS = ("fp8-stream", "fp8-after-load")
CACHE_STATES = ("cold", "warm")
PEAK_GOAL = 1.15
RESIDENCY_GOAL = 0.05
FP8_PEAK_GOAL = 0.6
NAIVE_MEANING = ("naive = WanModel(cfg) built on CPU with its default init (default dtype = file dtype), then "
                 "safetensors.torch.load_file(path) + model.load_state_dict(state_dict), state dict dropped")
OURS_MEANING = ("ours  = WanModel(cfg) built on meta, then videosdgx.runtime.loading.load_module(model, "
                "open_checkpoint(path), dtype=file dtype)")


def weight_bytes(cfg: WanConfig, dtype: torch.dtype) -> int:
    with torch.device("meta"):
        model = WanModel(cfg)
    return sum(t.numel() for t in model.state_dict().values()) * dtype.itemsize


def config_for_size(base: WanConfig, size_bytes: float, dtype: torch.dtype) -> WanConfig:
    """`base` with the number of blocks that makes its weights closest to `size_bytes`."""
    one, two = weight_bytes(dataclasses.replace(base, num_layers=1), dtype), weight_bytes(
        dataclasses.replace(base, num_layers=2), dtype)
    per_block = two - one
    return dataclasses.replace(base, num_layers=max(1, round((size_bytes - (one - per_block)) / per_block)))


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def generate(path: Path, cfg: WanConfig, dtype: torch.dtype) -> None:
    """Write a random-weight checkpoint of `cfg` with the official key names."""
    from safetensors.torch import save_file

    with torch.device("meta"):
        shapes = {name: t.shape for name, t in WanModel(cfg).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    tensors = {name: (torch.randn(shape, generator=generator) * 0.02).to(dtype) for name, shape in shapes.items()}
    save_file(tensors, path)


def load_ours(path: Path, cfg: WanConfig, dtype: torch.dtype) -> WanModel:
    checkpoint = open_checkpoint(path)
    with torch.device("meta"):
        model = WanModel(cfg)
    load_module(model, checkpoint, dtype=dtype)
    checkpoint.close()
    return model


def load_fp8_stream(path: Path, cfg: WanConfig, dtype: torch.dtype) -> WanModel:
    checkpoint = open_checkpoint(path)
    with torch.device("meta"):
        model = WanModel(cfg)
    quantize_module_linears(model, torch.float8_e4m3fn)
    load_module(model, checkpoint, dtype=dtype)
    checkpoint.close()
    return model


def load_fp8_after_load(path: Path, cfg: WanConfig, dtype: torch.dtype) -> WanModel:
    model = load_ours(path, cfg, dtype)
    quantize_module_linears(model, torch.float8_e4m3fn)
    return model


LOADERS = {"ours": load_ours, "fp8-stream": load_fp8_stream, "fp8-after-load": load_fp8_after_load}


def load_naive(path: Path, cfg: WanConfig, dtype: torch.dtype) -> WanModel:
    from safetensors.torch import load_file

    with default_dtype(dtype):
        model = WanModel(cfg)
    state_dict = load_file(path)
    model.load_state_dict(state_dict)
    del state_dict
    return model


def child(args: argparse.Namespace, cfg: WanConfig, dtype: torch.dtype) -> None:
    path = Path(args.checkpoint)
    if args.child == "generate":
        generate(path, cfg, dtype)
        write_result(args.result, {"file_bytes": path.stat().st_size})
        return
    loader = LOADERS.get(args.child, load_naive)
    with torch.no_grad(), Span() as span:
        model = loader(path, cfg, dtype)
    residency = resident_fraction(path)
    state = model.state_dict()
    write_result(args.result, {
        "span": span.as_dict(),
        "residency": residency,
        "weights": sum(t.numel() * t.element_size() for t in state.values()),
        "checksum": sum(float(t.double().sum()) for t in state.values()),
    })


def report(runs: dict[tuple[str, str], dict], cfg: WanConfig, dtype: str, file_bytes: int) -> str:
    weights = runs["ours", "cold"]["weights"]
    rows = []
    for method in METHODS:
        for cache in CACHE_STATES:
            run, span = runs[method, cache], runs[method, cache]["span"]
            peak, final = span["peak"] - span["baseline"], span["final"] - span["baseline"]
            rows.append([method, cache, f"{span['seconds']:.2f}", gb(peak), ratio(peak, run["weights"]), gb(final),
                         ratio(final, run["weights"]), gb(span["final_file"]), f"{100 * run['residency']:.1f}"])
    ratios = []
    verdicts = []
    for cache in CACHE_STATES:
        ours, naive = runs["ours", cache], runs["naive", cache]
        ours_span, naive_span = ours["span"], naive["span"]
        ours_peak, naive_peak = ours_span["peak"] - ours_span["baseline"], naive_span["peak"] - naive_span["baseline"]
        time_ratio = ours_span["seconds"] / naive_span["seconds"]
        ratios.append([cache, ratio(ours_peak, weights), ratio(naive_peak, weights), ratio(ours_peak, naive_peak),
                       f"{time_ratio:.3f}", f"{100 * ours['residency']:.1f} / {100 * naive['residency']:.1f}"])
        verdicts.append(f"{cache}: peak/weights {ours_peak / weights:.3f} "
                        f"{'PASS' if ours_peak / weights <= PEAK_GOAL else 'FAIL'}, time ours/naive {time_ratio:.3f} "
                        f"{'PASS' if time_ratio <= 1.0 else 'FAIL'}, page cache after load "
                        f"{100 * ours['residency']:.1f} % {'PASS' if ours['residency'] <= RESIDENCY_GOAL else 'FAIL'}")
    same = runs["ours", "cold"]["checksum"] == runs["naive", "cold"]["checksum"]
    lines = [
        f"Checkpoint: Wan2.1 T2V-1.3B architecture with {cfg.num_layers} blocks (dim {cfg.dim}), {dtype}, "
        f"one safetensors file of {gb(file_bytes)} GB; loaded weights {gb(weights)} GB.",
        OURS_MEANING,
        NAIVE_MEANING,
        "Each run is a fresh process; memory = RSS from /proc/self/status, increase over the RSS right before "
        "loading (VmHWM reset via /proc/self/clear_refs). cold = the file's pages evicted from the page cache "
        "first (posix_fadvise DONTNEED); warm = run again right after. 'page cache %' = share of the file in the "
        "OS page cache right after loading (mincore).",
        "",
        table(["method", "cache", "wall s", "peak GB", "peak/weights", "final GB", "final/weights",
               "file-backed RSS at end GB", "page cache %"], rows),
        "",
        table(["cache", "ours peak/weights", "naive peak/weights", "peak ours/naive", "time ours/naive",
               "page cache % ours / naive"], ratios),
        "",
        f"Goal: ours peak/weights <= {PEAK_GOAL} (naive ~2), ours time <= naive time, page cache after load <= "
        f"{100 * RESIDENCY_GOAL:.0f} %.",
        *verdicts,
        f"Both methods loaded identical values: {'yes' if same else 'NO (checksums differ)'}.",
    ]
    if ("fp8-stream", "cold") in runs:
        lines += ["", fp8_report(runs, file_bytes)]
    return "\n".join(lines)


def fp8_report(runs: dict[tuple[str, str], dict], file_bytes: int) -> str:
    """Loading the same file into fp8 Linears: quantised while streaming vs after a full-precision load."""
    rows = []
    for method in FP8_METHODS:
        run, span = runs[method, "cold"], runs[method, "cold"]["span"]
        peak, final = span["peak"] - span["baseline"], span["final"] - span["baseline"]
        rows.append([method, f"{span['seconds']:.2f}", gb(peak), ratio(peak, file_bytes), gb(run["weights"]),
                     ratio(run["weights"], file_bytes), ratio(final, file_bytes), f"{100 * run['residency']:.1f}"])
    stream = runs["fp8-stream", "cold"]
    peak = (stream["span"]["peak"] - stream["span"]["baseline"]) / file_bytes
    same = stream["checksum"] == runs["fp8-after-load", "cold"]["checksum"]
    return "\n".join([
        "Into float8_e4m3fn Linears (cold cache), ratios to the file's weight bytes:",
        table(["method", "wall s", "peak GB", "peak/file weights", "fp8 model GB", "model/file weights",
               "final RSS/file weights", "page cache %"], rows),
        f"Goal: fp8-stream peak/file weights <= {FP8_PEAK_GOAL}: {peak:.3f} "
        f"{'PASS' if peak <= FP8_PEAK_GOAL else 'FAIL'}",
        f"fp8-stream and fp8-after-load hold identical values: {'yes' if same else 'NO (checksums differ)'}.",
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=4.0, help="checkpoint size (default 4)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights dtype in the file and in RAM")
    parser.add_argument("--fp8", action="store_true", help="also load into fp8 Linears (streamed vs after load)")
    parser.add_argument("--tiny", action="store_true", help=f"tiny model, {TINY_SIZE_GB} GB (smoke test)")
    parser.add_argument("--workdir", default=None, help="where the temporary checkpoint goes (default: $TMPDIR)")
    parser.add_argument("--child", choices=("generate", *METHODS, *FP8_METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (or, with the hidden --child, one measurement). Returns the runs and the report."""
    args = parse_args(argv)
    dtype = DTYPES[args.dtype]
    size_gb = TINY_SIZE_GB if args.tiny else args.size_gb
    cfg = config_for_size(TINY_BASE if args.tiny else BASE, size_gb * 1e9, dtype)
    if args.child:
        child(args, cfg, dtype)
        return {}
    common = ["--size-gb", str(args.size_gb), "--dtype", args.dtype] + (["--tiny"] if args.tiny else [])
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="videosdgx-bench-load-") as tmp:
        checkpoint, result = Path(tmp) / "wan_dit.safetensors", Path(tmp) / "result.json"
        log.info("writing a %.2f GB checkpoint (%d blocks) to %s", size_gb, cfg.num_layers, checkpoint)
        file_bytes = run_child(SCRIPT, [*common, "--child", "generate", "--checkpoint", str(checkpoint)],
                               result)["file_bytes"]
        fsync_tree(checkpoint)
        runs = {}
        for method in METHODS:
            evict_from_page_cache(checkpoint)
            for cache in CACHE_STATES:
                log.info("loading: %s, %s", method, cache)
                runs[method, cache] = run_child(
                    SCRIPT, [*common, "--child", method, "--checkpoint", str(checkpoint)], result)
        for method in FP8_METHODS if args.fp8 else ():
            evict_from_page_cache(checkpoint)
            log.info("loading: %s, cold", method)
            runs[method, "cold"] = run_child(SCRIPT, [*common, "--child", method, "--checkpoint", str(checkpoint)],
                                             result)
    text = report(runs, cfg, args.dtype, file_bytes)
    log.info("\n%s", text)
    return {"runs": runs, "report": text, "config": cfg}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
