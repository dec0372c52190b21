"""LoRAs on the Wan DiT, on the CPU in float32: the cost of a rank-64 LoRA, ours vs diffusers, and what a 4-step
Lightning run saves against the official 40-step CFG run.

Measured, each side in its own fresh process (so that peaks never mix):

* Wan2.1 T2V-1.3B config (dim 1536, ffn 8960, 12 heads) cut to `--layers` blocks (default 6 of 30: the cost per
  block is what matters, and 6 keep a run short), random weights, one forward on a 17-frame 192x320 latent with a
  rank-64 LoRA on every block Linear (official `diffusion_model.` layout, alpha 64) and without it, alternating in
  the same process: ours (`apply_wan_lora`: runtime low-rank add; removed and re-applied between forwards) vs
  diffusers (`WanPipeline.load_lora_weights`: PEFT LoRA layers, not fused; adapters disabled / enabled). Wall time
  (best of `--repeat`) and peak RSS increase of the forward; the RSS the LoRA adds once applied. diffusers needs
  `peft`; without it its side is skipped and the report says so.
* Wan2.2 T2V-A14B pipeline (two experts, boundary 0.875) with a small DiT config (`--a14b-dim`, 4 blocks; the
  real 5120-wide experts do not fit this CPU's time budget): `sample_wan` with the official defaults (40 UniPC
  steps, shift 12, CFG 4 / 3, cond + uncond batched) vs the Lightning settings (4 Euler steps, CFG 1): DiT calls,
  model evaluations (batch rows) and sampling time.

    python bench/lora.py                 # a few minutes on 2 quiet cores
    python bench/lora.py --layers 30 --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from _measure import gb, proc_status, ratio, run_child, table, write_result
from wan import Setup, load_diffusers_dit, load_ours_dit, random_weights, relative_errors, summary, timed
from videosdgx.testing.lora import write_wan_lora
from videosdgx.wan.conditioning import TextConditioning
from videosdgx.wan.lightning import lightning_settings
from videosdgx.wan.lora import apply_wan_lora, read_wan_lora
from videosdgx.wan.sampler import SamplingSettings, sample_wan
from videosdgx.wan.transformer import WAN_PRESETS, WanConfig, WanModel
from videosdgx.wan.variants import wan_variant

log = logging.getLogger("bench.lora")

SCRIPT = Path(__file__).resolve()
LATENT = (1, 16, 5, 24, 40)  # 17 frames of 192x320
TINY_LATENT = (1, 16, 2, 4, 6)
RANK = 64
TIMESTEP = 750.0
FORWARD_CHILDREN = ("ours", "diffusers")
SAMPLE_CHILDREN = ("sample-default", "sample-lightning")
PARTS = ("forward", "lightning")


def dit_config(args: argparse.Namespace) -> WanConfig:
    if args.tiny:
        return WanConfig(dim=128, ffn_dim=256, num_heads=2, num_layers=2, in_dim=16, out_dim=16, text_dim=32,
                         freq_dim=32)
    return dataclasses.replace(WAN_PRESETS["wan2.1-t2v-1.3b"], num_layers=args.layers)


def a14b_config(args: argparse.Namespace) -> WanConfig:
    dim = 128 if args.tiny else args.a14b_dim
    return WanConfig(dim=dim, ffn_dim=dim * 27 // 10, num_heads=dim // 128 or 1, num_layers=2 if args.tiny else 4,
                     in_dim=16, out_dim=16, text_dim=64)


def generate(setup: Setup) -> None:
    with torch.device("meta"):
        model = WanModel(setup.dit)
    save_file(random_weights({n: t.shape for n, t in model.state_dict().items()}, 0), setup.dit_file)
    write_wan_lora(lora_file(setup), model, "official", rank=RANK, alpha=float(RANK), std=0.02, top_level=False)


def lora_file(setup: Setup) -> Path:
    return setup.folder / "lora_rank64.safetensors"


def forward(model: nn.Module, x: torch.Tensor, context: torch.Tensor, diffusers: bool) -> torch.Tensor:
    t = torch.tensor([TIMESTEP])
    if diffusers:
        return model(hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False)[0]
    return model(x, t, context)


def forward_child(side: str, setup: Setup, repeat: int) -> dict:
    """Forwards with and without the LoRA, alternating (so that a change in machine load hits both alike): ours
    removes and re-applies the LoRA (exact, cheap), diffusers disables and enables its PEFT adapter."""
    generator = torch.Generator().manual_seed(42)
    x = torch.randn(setup.latent, generator=generator)
    context = torch.randn(1, setup.dit.text_len, setup.dit.text_dim, generator=generator)
    diffusers = side == "diffusers"
    model = load_diffusers_dit(setup) if diffusers else load_ours_dit(setup)
    before = proc_status()["VmRSS"]
    if diffusers:
        from diffusers import WanPipeline

        WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=model
                    ).load_lora_weights(str(lora_file(setup)))
        switch = {True: model.enable_adapters, False: model.disable_adapters}
    else:
        lora = read_wan_lora(lora_file(setup))
        applied = [apply_wan_lora(model, lora)]

        def set_lora(on: bool) -> None:
            applied[0].remove()
            if on:
                applied[0] = apply_wan_lora(model, lora)

        switch = {on: (lambda on=on: set_lora(on)) for on in (True, False)}
    lora_bytes = proc_status()["VmRSS"] - before
    spans: dict[str, list] = {"lora": [], "base": []}
    for _ in range(repeat):
        for on in (True, False):
            switch[on]()
            out, [span] = timed(lambda: forward(model, x, context, diffusers), 1)
            spans["lora" if on else "base"].append(span)
            if on:
                torch.save(out.float().clone(), setup.folder / f"lora-{side}.pt")
    return {"spans": spans["lora"], "base_spans": spans["base"], "lora_bytes": lora_bytes}


class Counter:
    """Counts DiT calls and batch rows (model evaluations) through forward pre-hooks."""

    def __init__(self, experts: list[nn.Module]):
        self.calls = self.rows = 0
        for expert in experts:
            expert.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, inputs: tuple) -> None:
        self.calls += 1
        self.rows += inputs[0].shape[0]


def sample_child(name: str, cfg: WanConfig, latent: tuple[int, ...], repeat: int) -> dict:
    experts = []
    for seed in (0, 1):
        with torch.device("meta"):
            model = WanModel(cfg)
        weights = random_weights({n: t.shape for n, t in model.state_dict().items()}, seed)
        model.load_state_dict(weights, assign=True)
        experts.append(model.eval())
    generator = torch.Generator().manual_seed(7)
    text = TextConditioning(torch.randn(12, cfg.text_dim, generator=generator),
                            torch.randn(20, cfg.text_dim, generator=generator))
    variant = wan_variant("wan2.2-t2v-a14b")
    if name == "sample-lightning":
        settings = lightning_settings(variant.boundary, seed=0)
    else:
        settings = SamplingSettings(steps=variant.steps, shift=variant.shift, guidance=variant.guidance,
                                    guidance_low=variant.guidance_low, boundary=variant.boundary, seed=0)
    counter = Counter(experts)
    _, spans = timed(lambda: sample_wan(experts, text, latent[1:], settings), repeat)
    return {"spans": spans, "calls": counter.calls // repeat, "rows": counter.rows // repeat,
            "steps": len(settings.sigmas) - 1 if settings.sigmas else settings.steps}


def child(args: argparse.Namespace, setup: Setup) -> None:
    with torch.inference_mode():
        if args.child == "generate":
            generate(setup)
            result = {}
        elif args.child in FORWARD_CHILDREN:
            result = forward_child(args.child, setup, args.repeat)
        else:
            result = sample_child(args.child, a14b_config(args), setup.latent, 1)
    write_result(args.result, result)


def forward_lines(runs: dict[str, dict], errors: dict[str, float], setup: Setup, args: argparse.Namespace
                  ) -> list[str]:
    rows, stats = [], {}
    for side in FORWARD_CHILDREN:
        if side not in runs:
            continue
        stats[side] = lora, base = summary(runs[side]), summary({"spans": runs[side]["base_spans"]})
        rows += [[f"{side}, no LoRA", f"{base['seconds']:.2f}", gb(base["increase"]), ""],
                 [f"{side}, LoRA", f"{lora['seconds']:.2f}", gb(lora["increase"]), gb(runs[side]["lora_bytes"])],
                 [f"{side}: LoRA / no LoRA", ratio(lora["seconds"], base["seconds"]), "", ""]]
    lines = [
        f"Wan2.1 T2V-1.3B config cut to {setup.dit.num_layers} of 30 blocks (dim {setup.dit.dim}), random weights, "
        f"float32, CPU, {torch.get_num_threads()} threads; latent {'x'.join(map(str, setup.latent))}; rank-{RANK} "
        f"LoRA on the {10 * setup.dit.num_layers} block Linears; forwards with and without it alternate, best of "
        f"{args.repeat} each.",
        table(["run", "forward s", "forward peak increase GB", "RSS added by the LoRA GB"], rows),
        "(A LoRA merged into the weights would cost what 'no LoRA' costs; ours adds it at run time.)",
    ]
    if "diffusers" in stats:
        (ours, _), (ref, _) = stats["ours"], stats["diffusers"]
        lines += [
            f"ours/diffusers with the LoRA: time {ratio(ours['seconds'], ref['seconds'])}, forward peak increase "
            f"{ratio(ours['increase'], ref['increase'])}, RSS added by the LoRA "
            f"{ratio(runs['ours']['lora_bytes'], runs['diffusers']['lora_bytes'])}",
            f"output with the LoRA, max |ours - diffusers| / max |diffusers| = {errors['lora']:.2e}",
        ]
    else:
        lines.append("diffusers side skipped: its LoRA loading needs `peft`, which is not installed.")
    return lines + [""]


def sample_lines(runs: dict[str, dict], args: argparse.Namespace) -> list[str]:
    cfg = a14b_config(args)
    default, fast = runs["sample-default"], runs["sample-lightning"]
    seconds = {name: summary(runs[name])["seconds"] for name in SAMPLE_CHILDREN}
    rows = [[name, str(r["steps"]), str(r["calls"]), str(r["rows"]), f"{seconds[name]:.2f}"]
            for name, r in (("sample-default", default), ("sample-lightning", fast))]
    return [
        f"Wan2.2 T2V-A14B sampling (two experts, boundary 0.875) with a small DiT (dim {cfg.dim}, "
        f"{cfg.num_layers} blocks), latent {'x'.join(map(str, args_latent(args)))}: official defaults (40 UniPC "
        "steps, CFG 4 / 3, batched) vs Lightning (4 Euler steps, CFG 1).",
        table(["run", "steps", "DiT calls", "model evaluations", "sampling s"], rows),
        f"default/Lightning: model evaluations {ratio(default['rows'], fast['rows'])}x, DiT calls "
        f"{ratio(default['calls'], fast['calls'])}x, time "
        f"{ratio(seconds['sample-default'], seconds['sample-lightning'])}x",
    ]


def args_latent(args: argparse.Namespace) -> tuple[int, ...]:
    return TINY_LATENT if args.tiny else LATENT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=6, help="blocks of the 1.3B config (default 6 of 30)")
    parser.add_argument("--a14b-dim", type=int, default=512, help="DiT width of the A14B sampling run (512)")
    parser.add_argument("--repeat", type=int, default=2, help="timed forwards per measurement, best reported (2)")
    parser.add_argument("--only", choices=PARTS, nargs="+", default=list(PARTS), help="parts to run (all)")
    parser.add_argument("--tiny", action="store_true", help="tiny configs and latent (smoke test)")
    parser.add_argument("--workdir", default=None, help="where the temporary weights go (default: $TMPDIR)")
    parser.add_argument("--child", choices=("generate", *FORWARD_CHILDREN, *SAMPLE_CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (or, with the hidden --child, one measurement). Returns the runs and the report."""
    args = parse_args(argv)
    if args.child:
        child(args, Setup(dit_config(args), None, args_latent(args), Path(args.folder)))
        return {}
    passed = ["--layers", str(args.layers), "--a14b-dim", str(args.a14b_dim), "--repeat", str(args.repeat)]
    passed += ["--tiny"] if args.tiny else []
    forwards = [c for c in FORWARD_CHILDREN if "diffusers" not in c or importlib.util.find_spec("peft")]
    names = (["generate", *forwards] if "forward" in args.only else []) + \
        (list(SAMPLE_CHILDREN) if "lightning" in args.only else [])
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="videosdgx-bench-lora-") as tmp:
        setup = Setup(dit_config(args), None, args_latent(args), Path(tmp))
        runs = {}
        for name in names:
            log.info("running: %s", name)
            runs[name] = run_child(SCRIPT, [*passed, "--child", name, "--folder", tmp], setup.folder / "r.json")
        errors = {}
        if "diffusers" in runs:
            errors["lora"] = relative_errors(torch.load(setup.folder / "lora-ours.pt"),
                                             torch.load(setup.folder / "lora-diffusers.pt"))["max"]
    runs.pop("generate", None)
    lines = forward_lines(runs, errors, setup, args) if "forward" in args.only else []
    lines += sample_lines(runs, args) if "lightning" in args.only else []
    text = "\n".join(lines).rstrip()
    log.info("\n%s", text)
    return {"runs": runs, "errors": errors, "report": text}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
