"""Check a `generate` command line completely before any weight is read, and turn it into a job.

Numbers are refused when they cannot work (0 is a value: refused where it is meaningless, used where it is not),
media files are read now, the inputs must suit the variant, the output path must be writable, the device must
exist. Everything that is corrected (sizes rounded to the model's grid) is said before the run starts.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videosdgx.families import family
from videosdgx.job import INPUT_KINDS, LoraChoice, Variant, VideoRequest, fit_size
from videosdgx.manifest import Bundle, load_manifest
from videosdgx.runtime.errors import ConfigurationError

log = logging.getLogger(__name__)

DTYPES = ("auto", "bf16", "fp16", "fp32")
WEIGHT_FORMATS = ("default", "fp8_e4m3fn")
MAX_SEED = 2**64 - 1
INPUT_FLAGS = {"image": "--image", "end_image": "--end-image", "references": "--reference", "video": "--video",
               "audio": "--audio"}


class RequestError(ConfigurationError):
    """A `generate` option that cannot work; raised before anything is loaded (exit code 2)."""


@dataclass
class GenerateJob:
    """A checked request and everything needed to run it."""

    bundle: Bundle
    variant: Variant
    request: VideoRequest
    out: Path
    device: Any = None
    dtype: Any = None
    weight_format: str = "default"
    low_memory: bool = False


def installable_bundles() -> dict[str, Bundle]:
    """Bundles whose family runs in this release: every one of them works with `generate --model`."""
    return {name: bundle for name, bundle in load_manifest().bundles.items()
            if bundle.status == "available" and family(bundle.family).pipeline}


def models_epilog() -> str:
    """The `generate --help` list of bundles, grouped by family, with what each takes."""
    manifest = load_manifest()
    lines = ["models (--model BUNDLE):"]
    installable = installable_bundles()
    for name, bundle in installable.items():
        variant = family(bundle.family).variant_table()[bundle.variant]
        takes = ", ".join(INPUT_FLAGS[kind] for kind in INPUT_KINDS if kind in variant.inputs)
        size, _ = manifest.bundle_size(name)
        lines.append(f"  {name:32s} {variant.title}: {variant.width}x{variant.height}, {variant.frames} frames"
                     f"{'; takes ' + takes if takes else ''} ({size / 1e9:.1f} GB)")
    planned = [name for name in manifest.bundles if name not in installable]
    lines.append(f"not runnable in this release: {', '.join(planned)}")
    return "\n".join(lines)


def check_job(args: argparse.Namespace) -> GenerateJob:
    """Every check that can be made before loading; raises RequestError naming the option and the fix."""
    bundle, variant = _bundle_and_variant(args.model, bool(args.demo) and not args.server)
    request = VideoRequest(
        prompt=args.prompt[0], prompts=tuple(args.prompt), negative_prompt=args.negative,
        width=_positive(args, "width"), height=_positive(args, "height"), frames=_positive(args, "frames"),
        steps=_positive(args, "steps"), fps=_positive(args, "fps"), guidance=_scale(args, "cfg"),
        guidance_low=_scale(args, "cfg_low"), shift=_shift(args.shift), solver=args.solver,
        seed=_seed(args.seed), image=_image(args.image, "--image"), end_image=_image(args.end_image, "--end-image"),
        references=tuple(_image(path, "--reference") for path in args.reference),
        options=_options(getattr(args, "option", None) or []),
    )
    request.loras = _loras(args, bundle, variant)
    if args.video:
        request.video, request.video_fps = _video(args.video)
    if args.audio:
        request.audio = _audio(args.audio)
    _check_inputs(variant, request)
    if args.demo and not args.server:
        demo = {"width": 320, "height": 192, "frames": 17, "steps": 8}
        for name, value in demo.items():
            if getattr(request, name) is None:
                setattr(request, name, max(value, variant.size_multiple) if name in ("width", "height") else value)
    _round_size(variant, request)
    try:
        variant.check(request)
    except ConfigurationError as error:
        raise RequestError(str(error)) from None
    if args.server:
        return GenerateJob(bundle, variant, request, Path(args.out))
    return GenerateJob(bundle, variant, request, _out_file(args.out), _device(args.device),
                       _dtype(args.dtype), args.weight_format, args.low_memory)


def _bundle_and_variant(name: str, demo: bool = False) -> tuple[Bundle, Variant]:
    """The bundle and its variant; planned bundles of a family with a pipeline run with --demo only."""
    manifest = load_manifest()
    if name not in manifest.bundles:
        raise RequestError(f"--model {name}: no such bundle. Choose one of: {', '.join(installable_bundles())} "
                           "(`videosdgx generate --help` describes them).")
    bundle = manifest.bundles[name]
    row = family(bundle.family)
    if demo and bundle.status == "planned" and row.pipeline and row.demo:
        log.warning("--model %s is planned (its download is not verified yet); --demo runs its pipeline on tiny "
                    "random files in the bundle's layout", name)
        return bundle, row.variant_table()[bundle.variant]
    if bundle.status != "available" or not row.pipeline:
        why = bundle.message or f"{row.title} does not run in this release yet; its files can be downloaded"
        raise RequestError(f"--model {name}: {why}. Runnable bundles: {', '.join(installable_bundles())}.")
    return bundle, row.variant_table()[bundle.variant]


def _options(pairs: list[str]) -> dict[str, int | float | str]:
    """`--option KEY=VALUE` (repeatable) -> `request.options`; numbers become int / float, the rest stays text.
    What a key means and which values it takes is the family's (`Variant.check` refuses what it cannot use)."""
    options: dict[str, int | float | str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier() or not value:
            raise RequestError(f"--option {pair}: write KEY=VALUE, e.g. --option mode=extend.")
        if key in options:
            raise RequestError(f"--option {key} is given twice; give each option once.")
        for kind in (int, float):
            try:
                options[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return options


def _positive(args: argparse.Namespace, name: str) -> int | None:
    value = getattr(args, name)
    if value is not None and value < 1:
        raise RequestError(f"--{name} {value}: must be at least 1 (leave it out for the model's default).")
    return value


def _scale(args: argparse.Namespace, name: str) -> float | None:
    value = getattr(args, name)
    if value is not None and (not math.isfinite(value) or value < 0):
        flag = "--" + name.replace("_", "-")
        raise RequestError(f"{flag} {value}: a guidance scale is a finite number >= 0 (1 turns guidance off).")
    return value


def _shift(value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise RequestError(f"--shift {value}: the sigma shift is a finite number > 0 (1 = no shift).")
    return value


def _seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise RequestError(f"--seed {value}: seeds range from 0 to {MAX_SEED}.")
    return value


def _loras(args: argparse.Namespace, bundle: Bundle, variant: Variant) -> tuple[LoraChoice, ...]:
    """`--lora FILE[:STRENGTH]` (the model, or the high-noise expert of Wan A14B) and `--lora-low` (the low-noise
    expert). FILE is a path, or a file name in the models' loras folder (looked up once the folders are known)."""
    if args.lora_low and getattr(variant, "experts", 1) < 2:
        raise RequestError(f"--lora-low: {variant.title} has one diffusion model; give its LoRAs with --lora "
                           "(--lora-low is for the low-noise expert of Wan2.2 A14B).")
    return tuple(_lora(value, flag, target, bundle.family)
                 for flag, target, values in (("--lora", "high", args.lora), ("--lora-low", "low", args.lora_low))
                 for value in values)


def _lora(value: str, flag: str, target: str, family_id: str) -> LoraChoice:
    name, _, tail = value.rpartition(":")
    try:
        strength = float(tail) if name else 1.0
    except ValueError:
        name, strength = "", 1.0
    name = name or value
    if not math.isfinite(strength):
        raise RequestError(f"{flag} {value}: the strength after ':' must be a finite number (e.g. {name}:0.8).")
    path = Path(name).expanduser()
    if path.is_file():
        check_lora(path, family_id, flag)
    elif path.parent != Path("."):
        raise RequestError(f"{flag} {value}: no such file ({path}). Give a LoRA file, or the name of one in the "
                           "loras folder of your models.")
    return LoraChoice(path, strength, target)


def check_lora(path: Path, family_id: str, flag: str) -> None:
    """Refuse, before loading, a file that is not a LoRA of this family (a model, a LoRA for another model)."""
    from videosdgx.runtime.checkpoint import open_checkpoint
    from videosdgx.runtime.lora import check_lora_file

    try:
        with open_checkpoint(path) as checkpoint:
            check_lora_file(checkpoint, family_id, flag)
    except ConfigurationError:
        raise
    except Exception as error:
        raise RequestError(f"{flag} {path}: {error}") from None


def _readable(path: str, flag: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise RequestError(f"{flag} {path}: {'is a folder' if file.is_dir() else 'no such file'}.")
    return file


def _image(path: str | None, flag: str):
    if path is None:
        return None
    from videosdgx.media import read_video

    try:
        return read_video(_readable(path, flag), max_frames=1).frames
    except RequestError:
        raise
    except Exception as error:
        raise RequestError(f"{flag} {path}: not a readable image ({error}).") from None


def _video(path: str):
    from videosdgx.media import read_video

    try:
        clip = read_video(_readable(path, "--video"))
    except RequestError:
        raise
    except Exception as error:
        raise RequestError(f"--video {path}: not a readable video ({error}).") from None
    return clip.frames, clip.fps


def _audio(path: str) -> dict:
    from videosdgx.media import read_audio

    try:
        audio = read_audio(_readable(path, "--audio"))
    except RequestError:
        raise
    except Exception as error:
        raise RequestError(f"--audio {path}: not a readable audio file ({error}).") from None
    if audio["waveform"].shape[-1] == 0:
        raise RequestError(f"--audio {path}: the file holds no sound.")
    return audio


def _check_inputs(variant: Variant, request: VideoRequest) -> None:
    given = request.given_inputs()
    extra = sorted(given - variant.inputs)
    if extra:
        takes = ", ".join(INPUT_FLAGS[k] for k in INPUT_KINDS if k in variant.inputs) or "only a prompt"
        raise RequestError(f"{variant.title} takes no {', '.join(INPUT_FLAGS[k] for k in extra)}; it takes {takes}.")
    missing = sorted(variant.required - given)
    if missing:
        raise RequestError(f"{variant.title} needs {', '.join(INPUT_FLAGS[k] for k in missing)}.")
    if len(request.references) > variant.max_references and "references" in variant.inputs:
        raise RequestError(f"{variant.title} takes at most {variant.max_references} --reference images, "
                           f"got {len(request.references)}.")
    if len(request.prompts) > 1 and not variant.per_chunk_prompts:
        raise RequestError(f"{variant.title} takes one --prompt (per-chunk prompts are a MAGI-1 feature).")


def _round_size(variant: Variant, request: VideoRequest) -> None:
    try:
        width, height, frames, notes = fit_size(
            request.width if request.width is not None else variant.width,
            request.height if request.height is not None else variant.height,
            request.frames if request.frames is not None else variant.frames,
            variant.size_multiple, variant.frame_step)
    except ConfigurationError as error:
        raise RequestError(str(error)) from None
    if notes:
        request.width, request.height, request.frames = width, height, frames


def _out_file(out: str) -> Path:
    path = Path(out).expanduser()
    if path.is_dir():
        raise RequestError(f"--out {out} is a folder; give a file name ending in .mp4 (e.g. {path / 'video.mp4'}).")
    if path.suffix.lower() != ".mp4":
        raise RequestError(f"--out {out}: the video is written as MP4; give a name ending in .mp4.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RequestError(f"--out {out}: cannot create its folder ({error.strerror}).") from None
    if not os.access(path.parent, os.W_OK):
        raise RequestError(f"--out {out}: the folder {path.parent} is not writable.")
    return path


def _device(name: str):
    from videosdgx.runtime.device import install_xpu_guard, select_device

    install_xpu_guard()
    try:
        return select_device(name)
    except ConfigurationError as error:
        raise RequestError(f"--device {name}: {error}") from None


def _dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}.get(name)


def server_overrides(job: GenerateJob, args: argparse.Namespace, workflow: dict, name: str):
    """Every option as an override of the shipped workflow; an option it cannot take is refused, never dropped."""
    from videosdgx.client import Overrides
    from videosdgx.client.errors import UsageError
    from videosdgx.client.overrides import plan_overrides

    local_only = {"--device": args.device != "auto", "--low-memory": args.low_memory, "--download": args.download,
                  "--demo": args.demo, "--models-dir": bool(args.models_dir), "--comfyui": bool(args.comfyui),
                  "--lora": bool(args.lora), "--lora-low": bool(args.lora_low), "--option": bool(args.option)}
    refused = [flag for flag, given in local_only.items() if given]
    if refused:
        raise RequestError(f"{', '.join(refused)} only apply in-process; the ComfyUI server chooses its own "
                           "device, memory and model folders, and takes LoRAs through LoRA loader nodes in the "
                           "workflow (e.g. the shipped *-lightning workflows). Leave them out with --server.")
    request = job.request
    per_chunk = job.variant.per_chunk_prompts and len(request.prompts) > 1
    if len(request.prompts) > 1 and not per_chunk:
        raise RequestError(f"workflow {name} takes one --prompt.")
    overrides = Overrides(
        prompt="\n".join(request.prompts) if per_chunk else request.prompt,  # one line per chunk (MAGI-1)
        negative=request.negative_prompt or None, seed=request.seed, steps=request.steps,
        width=request.width, height=request.height, frames=request.frames,
        image=Path(args.image) if args.image else None, end_image=Path(args.end_image) if args.end_image else None,
        video=Path(args.video) if args.video else None, audio=Path(args.audio) if args.audio else None,
        cfg=request.guidance, cfg_low=request.guidance_low, shift=request.shift, solver=request.solver,
        fps=request.fps, weight_format=None if args.weight_format == "default" else args.weight_format,
        weight_dtype={"auto": None, "bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}[args.dtype],
    )
    if request.references:
        raise RequestError(f"workflow {name} takes no --reference images; run it in-process.")
    try:
        plan_overrides(workflow, overrides)
    except UsageError as error:
        raise RequestError(f"The shipped workflow {name} cannot take an option you gave: {error}") from None
    return overrides
