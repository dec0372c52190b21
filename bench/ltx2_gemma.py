"""Gemma 3 12B (LTX-2's text encoder) with fp8 weight storage vs bf16: weight bytes, forward time, output error.

The model has the real 12B layer shapes (hidden 3840, 16 x 256 query heads, 8 KV heads, MLP 15360) truncated to
`--layers` layers (default 2, both sliding-window as in the real pattern) and a `--vocab`-row embedding (default
8192: the 262208-row table is never quantised and only adds a lookup). Weights are random (seeded). Copies of the
same weights run on the same left-padded prompt:

* fp32  : the reference;
* bf16  : every weight and the activations in bf16;
* fp8   : the Linear weights in float8_e4m3fn with one fp32 scale each (runtime.quantized_linear, the layer that
          Comfy-Org's gemma_3_12B_it_fp8_scaled file loads into), activations in bf16.

Errors are the largest relative deviation from fp32 over the valid tokens of every hidden state LTX-2 uses, once as
run (bf16 activations) and once with fp32 activations on the stored weights, which isolates the storage format
(with bf16 activations, rounding of the large residual stream dominates; with fp32 activations the bf16 column
includes the bf16 embedding table, the fp8 column only the quantised Linears). On CPU fp8 weights are dequantised
for every matmul, so they cost time there.

    python bench/ltx2_gemma.py                      # CPU, 64 tokens
    python bench/ltx2_gemma.py --device cuda --tokens 1024
    python bench/ltx2_gemma.py --tiny                # toy sizes, a smoke test
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace

import torch

from _measure import ratio, table
from videosdgx.runtime.quantized_linear import quantize_module_linears
from videosdgx.text.gemma3 import Gemma3Config, Gemma3TextModel


def build(cfg: Gemma3Config, seed: int) -> Gemma3TextModel:
    torch.manual_seed(seed)
    model = Gemma3TextModel(cfg).eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            tensor.normal_(0.0, 0.02 if "proj" in name else 0.5)
            if "norm" in name:
                tensor.mul_(0.2)
    return model


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def run(model: Gemma3TextModel, ids: torch.Tensor, mask: torch.Tensor, repeats: int) -> tuple[list, float]:
    """Hidden states and the best forward time of `repeats` runs (after one warm-up)."""
    device = ids.device
    with torch.no_grad():
        states = model(ids, mask)
        best = float("inf")
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(ids, mask)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return states, best


def max_relative_error(states: list, reference: list, mask: torch.Tensor) -> float:
    valid = mask.bool()
    return max(((s.float() - r)[valid].abs().max() / r[valid].abs().max()).item() for s, r in zip(states, reference))


TINY = Gemma3Config(vocab=512, hidden=128, intermediate=256, layers=2, heads=2, kv_heads=2, head_dim=64)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes (smoke test)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = TINY if args.tiny else replace(Gemma3Config(), layers=args.layers, vocab=args.vocab)

    reference_model = build(cfg, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(4, cfg.vocab, (1, args.tokens), generator=generator)
    mask = torch.ones_like(ids)
    mask[:, : args.tokens // 4] = 0  # left padding, as LTX-2 feeds Gemma
    ids, mask = ids.to(device), mask.to(device)

    reference, ref_time = run(reference_model.to(device), ids, mask, args.repeats)
    rows = {"weight bytes (GB)": [], "forward time (s)": [], "max rel. error vs fp32": [],
            "same, fp32 activations (storage only)": []}
    for name in ("bf16", "fp8"):
        model = copy.deepcopy(reference_model).to(torch.bfloat16)
        if name == "fp8":
            quantize_module_linears(model, torch.float8_e4m3fn)
        states, seconds = run(model, ids, mask, args.repeats)
        rows["weight bytes (GB)"].append(weight_bytes(model) / 1e9)
        rows["forward time (s)"].append(seconds)
        rows["max rel. error vs fp32"].append(max_relative_error(states, reference, mask))
        del model
        storage_only = copy.deepcopy(reference_model)  # fp32 compute on the stored weights
        if name == "fp8":
            quantize_module_linears(storage_only, torch.float8_e4m3fn)
        else:
            storage_only.to(torch.bfloat16).float()
        with torch.no_grad():
            rows["same, fp32 activations (storage only)"].append(
                max_relative_error(storage_only(ids, mask), reference, mask))
        del storage_only
    formats = {"weight bytes (GB)": "{:.3f}", "forward time (s)": "{:.3f}"}
    lines = [[label, formats.get(label, "{:.2e}").format(b), formats.get(label, "{:.2e}").format(f), ratio(f, b)]
             for label, (b, f) in rows.items()]
    shapes = "toy" if args.tiny else "Gemma 3 12B"
    report = (f"{shapes} shapes, {cfg.layers} layers, vocab {cfg.vocab}, {args.tokens} tokens "
              f"({args.tokens - args.tokens // 4} valid), {device}; fp32 reference forward {ref_time:.3f} s\n"
              + table(["", "bf16", "fp8 (e4m3 + scale)", "fp8 / bf16"], lines))
    print(report)
    return {"rows": rows, "report": report}


if __name__ == "__main__":
    main()
