"""SkyReels V3 avatar audio front end on the CPU in float32: our wav2vec2 vs transformers' Wav2Vec2Model, and our
audio projector vs the official `AudioProjModel`, same random weights and inputs.

Measured, each in its own fresh process: one wav2vec2 forward (base width: 12 layers of 768, hidden states of every
layer) on 10 s of 16 kHz audio; one audio-projector forward on the windows of 10 s of video (249 frames at 25 fps,
windows of 5 x 12 x 768 -> 63 latent frames of 32 tokens x 768). `--repeat` forwards in each of `--rounds` processes
per side, the sides alternating; reported: the least wall time, the least CPU time (user + system: less sensitive
than wall time to other jobs on a shared machine), the highest RSS increase during a forward, and their spread. The
official projector needs the SkyReels-V3 sources: `SKYREELS_V3_SRC=/path/to/SkyReels-V3` and `/work/shared/reference`
(skyreels_v3_cpu_stubs) on PYTHONPATH; without them its row is skipped.

    python bench/skyreels.py --repeat 4 --rounds 3   # real widths
    python bench/skyreels.py --tiny      # a smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from _measure import Span, gb, ratio, run_child, table, write_result
from videosdgx.skyreels_v3.avatar import AudioProjection, AvatarConfig
from videosdgx.skyreels_v3.wav2vec2 import Wav2Vec2Config, Wav2Vec2Encoder, wav2vec2_key
from videosdgx.testing.skyreels_v3 import seeded_weights
from videosdgx.wan.transformer import WAN_PRESETS

log = logging.getLogger("bench.skyreels")
SCRIPT = Path(__file__).resolve()
CHILDREN = ("w2v-ours", "w2v-transformers", "proj-ours", "proj-official")


def sizes(tiny: bool) -> dict:
    if tiny:
        return dict(w2v=Wav2Vec2Config(hidden=48, layers=2, heads=3, intermediate=64, conv_dims=(16,) * 7,
                                       position_kernel=16, position_groups=4), seconds=1.0, frames=9, channels=8,
                    intermediate=16, dim=16, tokens=4)
    return dict(w2v=Wav2Vec2Config(), seconds=10.0, frames=249, channels=768, intermediate=512, dim=768, tokens=32)


def transformers_config(cfg: Wav2Vec2Config):
    from transformers import Wav2Vec2Config as HFConfig

    return HFConfig(hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                    intermediate_size=cfg.intermediate, conv_dim=cfg.conv_dims, conv_kernel=cfg.conv_kernels,
                    conv_stride=cfg.conv_strides, num_conv_pos_embeddings=cfg.position_kernel,
                    num_conv_pos_embedding_groups=cfg.position_groups, feat_extract_norm="group",
                    do_stable_layer_norm=False)


def wav2vec2_pair(cfg: Wav2Vec2Config, ours: bool) -> torch.nn.Module:
    from transformers import Wav2Vec2Model

    reference = Wav2Vec2Model(transformers_config(cfg)).eval()
    state = {k: v for k, v in reference.state_dict().items() if wav2vec2_key(k)}
    weights = seeded_weights({wav2vec2_key(k): tuple(v.shape) for k, v in state.items()}, 0)
    if not ours:
        reference.load_state_dict({k: weights[wav2vec2_key(k)] for k in state}, strict=False)
        return reference
    model = Wav2Vec2Encoder(cfg).eval()
    model.load_state_dict(weights, strict=True)
    return model


def avatar_config(size: dict) -> AvatarConfig:
    return AvatarConfig(wan=WAN_PRESETS["wan2.1-i2v-14b"], audio_channels=size["channels"],
                        intermediate_dim=size["intermediate"], audio_dim=size["dim"], context_tokens=size["tokens"])


def projector(size: dict, ours: bool) -> tuple[torch.nn.Module, callable]:
    cfg = avatar_config(size)
    model = AudioProjection(cfg).eval()
    weights = seeded_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}, 1)
    if ours:
        model.load_state_dict(weights)
        return model, model
    import skyreels_v3_cpu_stubs  # noqa: F401
    from skyreels_v3.modules.transformer_a2v import AudioProjModel

    official = AudioProjModel(seq_len=cfg.audio_window, seq_len_vf=cfg.window_vf, blocks=cfg.audio_blocks,
                              channels=cfg.audio_channels, intermediate_dim=cfg.intermediate_dim,
                              output_dim=cfg.audio_dim, context_tokens=cfg.context_tokens, norm_output_audio=True)
    official.load_state_dict(weights)

    def run(windows: torch.Tensor) -> torch.Tensor:  # our split (tested equal to the official WanModel's)
        return official(*model.split(windows))

    return official.eval(), run


def child(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    size = sizes(args.tiny)
    kind, side = args.child.split("-")
    if kind == "w2v":
        model = wav2vec2_pair(size["w2v"], side == "ours")
        x = torch.randn(1, int(size["seconds"] * 16000), generator=torch.Generator().manual_seed(2))
        call = (lambda: model(x)) if side == "ours" else (lambda: model(x, output_hidden_states=True).hidden_states)
    else:
        if side == "official" and not os.environ.get("SKYREELS_V3_SRC"):
            write_result(args.result, {"skipped": "SKYREELS_V3_SRC not set"})
            return
        _, call_model = projector(size, side == "ours")
        x = torch.randn(1, size["frames"], 5, 12, size["channels"], generator=torch.Generator().manual_seed(3))
        call = lambda: call_model(x)  # noqa: E731
    runs = []
    with torch.no_grad():
        for _ in range(args.repeat):
            cpu = time.process_time()
            with Span() as span:
                out = call()
            runs.append({**span.as_dict(), "cpu": time.process_time() - cpu})
    first = out[-1] if isinstance(out, (list, tuple)) else out
    torch.save(first, Path(args.folder) / f"{args.child}.pt")
    write_result(args.result, {"all_seconds": [r["seconds"] for r in runs], "all_cpu": [r["cpu"] for r in runs],
                               "all_peaks": [r["peak"] - r["baseline"] for r in runs]})


def merged(results: list[dict]) -> dict:
    """The runs of every round together: the least wall and CPU time, the highest peak (a process's first forward
    sets up more than the later ones)."""
    if "skipped" in results[0]:
        return results[0]
    run = {key: [v for r in results for v in r[key]] for key in ("all_seconds", "all_cpu", "all_peaks")}
    return {**run, "seconds": min(run["all_seconds"]), "cpu": min(run["all_cpu"]), "peak": max(run["all_peaks"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--repeat", type=int, default=2, help="forwards per process")
    parser.add_argument("--rounds", type=int, default=1,
                        help="processes per side, ours and the reference alternating (a shared machine's load drifts)")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return {}
    passed = ["--repeat", str(args.repeat)] + (["--tiny"] if args.tiny else [])
    with tempfile.TemporaryDirectory(prefix="videosdgx-bench-skyreels-") as tmp:
        results = {name: [] for name in CHILDREN}
        for round_ in range(args.rounds):
            for name in CHILDREN if round_ % 2 == 0 else CHILDREN[1::-1] + CHILDREN[:1:-1]:
                results[name].append(run_child(SCRIPT, [*passed, "--child", name, "--folder", tmp],
                                               Path(tmp) / "result.json"))
        runs = {name: merged(r) for name, r in results.items()}
        error = {}
        for kind, other in (("w2v", "transformers"), ("proj", "official")):
            if "skipped" not in runs[f"{kind}-{other}"]:
                ours, ref = torch.load(Path(tmp) / f"{kind}-ours.pt"), torch.load(Path(tmp) / f"{kind}-{other}.pt")
                error[kind] = ((ours - ref).abs().max() / ref.abs().max()).item()
    rows = []
    for kind, other, what in (("w2v", "transformers", "wav2vec2, 10 s audio"), ("proj", "official", "audio projector")):
        ours, ref = runs[f"{kind}-ours"], runs[f"{kind}-{other}"]
        if "skipped" in ref:
            rows.append([what, f"{ours['seconds']:.3f}", "skipped", "", "", gb(ours["peak"]), "", "", ""])
            continue
        rows.append([what, f"{ours['seconds']:.3f}", f"{ref['seconds']:.3f}", ratio(ours["seconds"], ref["seconds"]),
                     ratio(ours["cpu"], ref["cpu"]), gb(ours["peak"]), gb(ref["peak"]),
                     ratio(ours["peak"], ref["peak"]), f"{error[kind]:.1e}"])
    if len(rows) == 2 and all("skipped" not in run for run in runs.values()):
        path = {side: {"seconds": sum(runs[f"{k}-{side if side == 'ours' else o}"]["seconds"] for k, o in pairs),
                       "cpu": sum(runs[f"{k}-{side if side == 'ours' else o}"]["cpu"] for k, o in pairs),
                       "peak": max(runs[f"{k}-{side if side == 'ours' else o}"]["peak"] for k, o in pairs)}
                for side in ("ours", "ref") for pairs in [(("w2v", "transformers"), ("proj", "official"))]}
        ours, ref = path["ours"], path["ref"]
        rows.append(["whole audio path (sum; max peak)", f"{ours['seconds']:.3f}", f"{ref['seconds']:.3f}",
                     ratio(ours["seconds"], ref["seconds"]), ratio(ours["cpu"], ref["cpu"]), gb(ours["peak"]),
                     gb(ref["peak"]), ratio(ours["peak"], ref["peak"]), ""])
    text = table(["what", "ours s", "ref s", "time ratio", "cpu-time ratio", "ours peak GB", "ref peak GB",
                  "peak ratio", "rel. max error"], rows)
    spread = "\n".join(
        f"{name}: {min(run['all_seconds']):.3f}-{max(run['all_seconds']):.3f} s "
        f"(cpu {min(run['all_cpu']):.3f}-{max(run['all_cpu']):.3f} s), "
        f"peak {gb(min(run['all_peaks']))}-{gb(max(run['all_peaks']))} GB over {len(run['all_seconds'])} runs"
        for name, run in runs.items() if "skipped" not in run
    )
    text = f"{text}\n\nSpread over the runs (the table: least times, highest peaks):\n{spread}"
    log.info("\n%s", text)
    return {"runs": runs, "errors": error, "report": text}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
