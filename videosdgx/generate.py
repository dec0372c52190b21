"""`videosdgx generate`: a video from a prompt, in-process or on a running ComfyUI server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows" / "api"
DEMO_SIZE = {"width": 320, "height": 192, "frames": 17, "steps": 8}
DTYPES = ("auto", "bf16", "fp16", "fp32")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    from videosdgx.wan.variants import WAN_VARIANTS

    parser.add_argument("--model", default="wan2.1-t2v-1.3b", choices=sorted(WAN_VARIANTS), help="model variant")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", default="", help="negative prompt (default: the model's official one)")
    parser.add_argument("--out", default="video.mp4", help="output .mp4 (with --server: output folder)")
    parser.add_argument("--image", help="start image (image-to-video models)")
    parser.add_argument("--end-image", help="last frame image (FLF2V)")
    for name in ("width", "height", "frames", "steps", "fps"):
        parser.add_argument(f"--{name}", type=int, help=f"{name} (default: the model's official value)")
    parser.add_argument("--shift", type=float)
    parser.add_argument("--cfg", type=float, help="guidance scale (of the high-noise expert for A14B)")
    parser.add_argument("--cfg-low", type=float, help="guidance scale of the low-noise expert (A14B)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--solver", default="unipc", choices=("unipc", "euler"))
    where = parser.add_argument_group("where the model files are")
    where.add_argument("--models-dir", help="a models folder laid out like ComfyUI's (diffusion_models/, vae/, ...)")
    where.add_argument("--comfyui", help="a ComfyUI folder (default: found from the current folder or $COMFYUI_PATH)")
    where.add_argument("--demo", action="store_true",
                       help="use generated tiny random weights (no downloads; the video is noise)")
    run = parser.add_argument_group("how to run")
    run.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    run.add_argument("--dtype", default="auto", choices=DTYPES)
    run.add_argument("--weight-format", default="default", choices=("default", "fp8_e4m3fn"),
                     help="convert weights at load (fp8 halves DiT memory)")
    run.add_argument("--low-memory", action="store_true", help="free the text encoder after encoding")
    run.add_argument("--server", help="run the model's workflow on this ComfyUI server instead of in-process")


def _load_image(path: str | None):
    if path is None:
        return None
    from videosdgx.media import read_video

    return read_video(path, max_frames=1).frames


def _models(args: argparse.Namespace, variant, scratch: Path):
    from videosdgx.install.comfyui import find_comfyui, model_folders
    from videosdgx.wan.files import find_wan_files

    if args.demo:
        from videosdgx.testing.wan import write_wan_models

        log.warning("--demo: generating tiny RANDOM weights; the video will be noise, not your prompt")
        return write_wan_models(variant.name, scratch / "models")
    if args.models_dir:
        return find_wan_files(variant, args.models_dir)
    comfyui = Path(args.comfyui) if args.comfyui else find_comfyui(Path.cwd(), os.environ, Path.home())
    return find_wan_files(variant, model_folders(comfyui=comfyui))


class ProgressLine:
    """One status line on stderr per stage, rewritten in place on a terminal, every 25% otherwise."""

    def __init__(self) -> None:
        self.shown: dict[str, int] = {}
        self.step = 1 if sys.stderr.isatty() else 25

    def __call__(self, stage: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent - self.shown.get(stage, -self.step) < self.step and done != total:
            return
        self.shown[stage] = percent
        units = f"{done / 1e9:.2f}/{total / 1e9:.2f} GB" if stage == "loading" else f"{done}/{total}"
        end = "\n" if done == total else ""
        print(f"\r{stage}: {percent:3d}% ({units})", end=end if self.step == 1 else "\n", file=sys.stderr,
              flush=True)


def generate_in_process(args: argparse.Namespace) -> Path:
    import torch

    from videosdgx.media import write_video
    from videosdgx.runtime.device import default_dtype, install_xpu_guard, select_device
    from videosdgx.runtime.model_files import LoadRequest
    from videosdgx.wan.pipeline import GenerateRequest, WanPipeline
    from videosdgx.wan.variants import wan_variant

    install_xpu_guard()
    variant = wan_variant(args.model)
    device = select_device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}.get(args.dtype)
    sizes = {name: getattr(args, name) for name in ("width", "height", "frames", "steps")}
    if args.demo:
        sizes = {name: value or DEMO_SIZE[name] for name, value in sizes.items()}
    with tempfile.TemporaryDirectory(prefix="videosdgx-") as scratch:
        files = _models(args, variant, Path(scratch))
        progress = ProgressLine()
        load = LoadRequest(dtype or default_dtype(device), device, args.weight_format,
                           progress=lambda done, total: progress("loading", done, total))
        pipeline = WanPipeline(variant, files, load, keep_text_encoder=not args.low_memory)
        request = GenerateRequest(
            args.prompt, args.negative, sizes["width"], sizes["height"], sizes["frames"], sizes["steps"], args.shift,
            args.cfg, args.cfg_low, args.seed, args.solver, _load_image(args.image), _load_image(args.end_image),
            args.fps,
        )
        video = pipeline.generate(request, progress)
    out = write_video(args.out, video.frames, video.fps)
    print(f"wrote {out} ({video.frames.shape[0]} frames, {video.frames.shape[2]}x{video.frames.shape[1]}, "
          f"{video.fps} fps){' - demo: random weights, the picture is noise' if args.demo else ''}")
    return out


def generate_on_server(args: argparse.Namespace) -> int:
    import json

    from videosdgx.client import Overrides, run_workflow

    from videosdgx.runtime.errors import ConfigurationError

    name = args.model + (("-i2v" if args.image else "-t2v") if args.model == "wan2.2-ti2v-5b" else "")
    path = WORKFLOWS / f"{name}.json"
    if not path.is_file():
        raise ConfigurationError(f"No shipped workflow for {args.model} ({path.name}); run it in-process instead.")
    workflow = json.loads(path.read_text())
    overrides = Overrides(sets=[], prompt=args.prompt, negative=args.negative or None, seed=args.seed,
                          steps=args.steps, width=args.width, height=args.height, frames=args.frames,
                          image=Path(args.image) if args.image else None)
    result = run_workflow(workflow, args.server, args.out, overrides)
    for path in result.outputs:
        print(f"wrote {path}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from videosdgx.client import ClientError
    from videosdgx.runtime.errors import VideosDGXError

    try:
        if args.server:
            return generate_on_server(args)
        generate_in_process(args)
        return 0
    except ClientError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except VideosDGXError as exc:
        log.error("%s", exc)
        return 1
