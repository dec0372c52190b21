"""`videosdgx generate`: a video from a prompt with any installable bundle, in-process or on a ComfyUI server.

Every option is checked before a weight is read (`videosdgx.request`); the family registry supplies the
variant, its pipeline and its demo files, so this module names no model family.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from videosdgx.families import family, shipped_workflows
from videosdgx.manifest import load_manifest
from videosdgx.paths import default_models_dir, shipped
from videosdgx.request import DTYPES, WEIGHT_FORMATS, GenerateJob, RequestError, check_job, models_epilog

log = logging.getLogger(__name__)

DEFAULT_MODEL = "wan2.1-t2v-1.3b"


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = models_epilog()
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="BUNDLE",
                        help=f"a model bundle of the manifest (listed below; default {DEFAULT_MODEL})")
    parser.add_argument("--prompt", required=True, action="append",
                        help="the prompt; repeat it for one prompt per chunk (MAGI-1)")
    parser.add_argument("--negative", default="", help="negative prompt (default: the model's official one)")
    parser.add_argument("--out", default="video.mp4", help="output .mp4 (with --server: an output folder)")
    media = parser.add_argument_group("input media (what each model takes is listed below)")
    media.add_argument("--image", help="start image (image-to-video)")
    media.add_argument("--end-image", help="last frame image (first-last-frame-to-video)")
    media.add_argument("--reference", action="append", default=[], help="reference image (repeatable)")
    media.add_argument("--video", help="input video (extension, continuation)")
    media.add_argument("--audio", help="input audio (talking avatar)")
    values = parser.add_argument_group("sampling (unset: the model's official value)")
    for name in ("width", "height", "frames", "steps", "fps"):
        values.add_argument(f"--{name}", type=int)
    values.add_argument("--shift", type=float)
    values.add_argument("--cfg", type=float, help="guidance scale (of the high-noise expert for Wan A14B)")
    values.add_argument("--cfg-low", type=float, help="guidance scale of the low-noise expert (Wan A14B)")
    values.add_argument("--seed", type=int, default=0)
    values.add_argument("--solver", choices=("unipc", "euler"))
    values.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a model-specific setting (repeatable), e.g. --option mode=shot --option duration=3 "
                             "(SkyReels V3 V2V), --option resolution=480P; checked before loading")
    where = parser.add_argument_group("where the model files are")
    where.add_argument("--models-dir", help="a models folder laid out like ComfyUI's (diffusion_models/, vae/, ...)")
    where.add_argument("--comfyui", help="a ComfyUI folder (default: found from the current folder or $COMFYUI_PATH; "
                                         f"without one: {default_models_dir()})")
    where.add_argument("--download", action="store_true", help="download the bundle's missing files first")
    where.add_argument("--demo", action="store_true",
                       help="use generated tiny random weights (no downloads; the video is noise)")
    loras = parser.add_argument_group("LoRAs (FILE: a path, or a file name in the models' loras folder)")
    loras.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                       help="a LoRA for the model (Wan2.2 A14B: for the high-noise expert); repeatable")
    loras.add_argument("--lora-low", action="append", default=[], metavar="FILE[:STRENGTH]",
                       help="a LoRA for the low-noise expert of Wan2.2 A14B; repeatable")
    run = parser.add_argument_group("how to run")
    run.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    run.add_argument("--dtype", default="auto", choices=DTYPES)
    run.add_argument("--weight-format", default="default", choices=WEIGHT_FORMATS,
                     help="convert weights at load (fp8 halves DiT memory)")
    run.add_argument("--low-memory", action="store_true", help="free the text encoder after encoding")
    run.add_argument("--server", help="run the model's shipped workflow on this ComfyUI server instead")


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


def _folders(args: argparse.Namespace):
    """--models-dir, else --comfyui, else a ComfyUI found around us, else the default models folder."""
    from videosdgx.install.comfyui import find_comfyui, model_folders

    if args.models_dir:
        return model_folders(models_dir=Path(args.models_dir))
    comfyui = Path(args.comfyui) if args.comfyui else find_comfyui(Path.cwd(), os.environ, Path.home())
    if comfyui is not None:
        return model_folders(comfyui=comfyui)
    log.info("no ComfyUI found: using the models folder %s", default_models_dir())
    return model_folders(models_dir=default_models_dir())


def _bundle_files(job: GenerateJob, args: argparse.Namespace, scratch: Path):
    from videosdgx.bundle_files import MissingFilesError, find_bundle_files
    from videosdgx.install.comfyui import model_folders

    if args.demo:
        log.warning("--demo: generating tiny RANDOM weights; the video will be noise, not your prompt")
        family(job.bundle.family).hook("demo")(job.bundle.name, scratch / "models")
        return find_bundle_files(job.bundle.name, model_folders(models_dir=scratch / "models"))
    folders = _folders(args)
    _find_loras(job, folders)
    try:
        return find_bundle_files(job.bundle.name, folders)
    except MissingFilesError:
        if not args.download:
            raise
    from videosdgx.install.download import install
    from videosdgx.install.plan import plan_install

    manifest = load_manifest()
    install(plan_install(manifest, [job.bundle.name], folders), manifest, folders)
    return find_bundle_files(job.bundle.name, folders)


def _find_loras(job: GenerateJob, folders) -> None:
    """Give every `--lora NAME` its path in the loras folder(s), checked like a given path."""
    from videosdgx.request import check_lora

    found = []
    for choice in job.request.loras:
        if not choice.path.is_file():
            dirs = folders.search_dirs("loras")
            path = next((d / choice.path for d in dirs if (d / choice.path).is_file()), None)
            if path is None:
                flag = "--lora-low" if choice.target == "low" else "--lora"
                raise RequestError(f"{flag} {choice.path}: no such file here or in the loras folder(s) "
                                   f"{', '.join(map(str, dirs))}.")
            check_lora(path, job.bundle.family, "--lora")
            choice = dataclasses.replace(choice, path=path)
        found.append(choice)
    job.request.loras = tuple(found)


def generate_in_process(job: GenerateJob, args: argparse.Namespace) -> Path:
    from videosdgx.runtime.device import default_dtype
    from videosdgx.runtime.model_files import LoadRequest

    pipeline_hook = family(job.bundle.family).hook("pipeline")
    with tempfile.TemporaryDirectory(prefix="videosdgx-") as scratch:
        files = _bundle_files(job, args, Path(scratch))
        progress = ProgressLine()
        load = LoadRequest(job.dtype or default_dtype(job.device), job.device, job.weight_format,
                           progress=lambda done, total: progress("loading", done, total))
        check_memory_plan(job, files, load, None if args.demo else _folders(args))
        pipeline = pipeline_hook(job.variant, files, load, job.low_memory)
        result = pipeline.generate(job.request, progress)
    for note in result.notes:
        log.warning("%s", note)
    out = save_result(result, job.out)
    frames = result.frames
    print(f"wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, {result.fps:g} fps"
          f"{', with audio' if result.audio is not None else ''})"
          f"{' - demo: random weights, the picture is noise' if args.demo else ''}")
    return out


def check_memory_plan(job: GenerateJob, files, load, folders) -> None:
    """Stop before loading when the run's predicted peak memory does not fit (families with a memory formula)."""
    from videosdgx.bundle_files import MissingFilesError, find_bundle_files
    from videosdgx.plan import Size, check_plan, plan_run

    if family(job.bundle.family).memory is None:
        return
    request, variant = job.request, job.variant
    size = Size(request.width or variant.width, request.height or variant.height, request.frames or variant.frames)
    plan = plan_run(job.bundle.name, size, load, job.low_memory, files)
    log.info("%s", plan.describe())

    def files_of(bundle: str):
        if bundle == job.bundle.name:
            return files  # the run's own files (also the demo's): other settings of this bundle plan on them
        try:
            return find_bundle_files(bundle, folders) if folders is not None else None
        except MissingFilesError:
            return None

    check_plan(plan, files_of)


def save_result(result, out: Path) -> Path:
    """Write the MP4; if that fails, keep the finished frames (and audio) in a file and say where."""
    from videosdgx.media import write_video
    from videosdgx.runtime.errors import VideosDGXError

    try:
        return write_video(out, result.frames, result.fps, audio=result.audio)
    except Exception as error:
        import torch

        for folder in (out.parent, Path(tempfile.gettempdir())):
            rescue = folder / f"{out.stem}.frames.pt"
            try:
                torch.save({"frames": result.frames, "fps": result.fps, "audio": result.audio}, rescue)
                break
            except OSError:
                continue
        else:
            raise
        raise VideosDGXError(
            f"The video was generated but writing {out} failed ({error}). The frames are saved in {rescue} "
            "(torch.load it: frames [T, H, W, 3] in 0..1, fps, audio); free space or choose another --out and "
            "write them with videosdgx.media.write_video."
        ) from None


def generate_on_server(job: GenerateJob, args: argparse.Namespace) -> int:
    from videosdgx.client import run_workflow
    from videosdgx.request import server_overrides

    name = job.variant.workflow_for(job.request.given_inputs())
    if name is None or name not in shipped_workflows():
        raise RequestError(f"No workflow is shipped for {job.bundle.name}; run it in-process (without --server).")
    workflow = json.loads((shipped("workflows") / "api" / f"{name}.json").read_text())
    result = run_workflow(workflow, args.server, args.out, server_overrides(job, args, workflow, name))
    for path in result.outputs:
        print(f"wrote {path}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from videosdgx.client import ClientError
    from videosdgx.install.errors import DownloadInterrupted
    from videosdgx.runtime.errors import VideosDGXError

    try:
        job = check_job(args)
        if args.server:
            return generate_on_server(job, args)
        generate_in_process(job, args)
        return 0
    except RequestError as exc:
        log.error("%s", exc)
        return 2
    except DownloadInterrupted as exc:
        log.error("%s", exc)
        return 130
    except ClientError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except VideosDGXError as exc:
        log.error("%s", exc)
        return 1
