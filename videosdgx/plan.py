"""A memory plan before the run: per phase, what is resident and the predicted peak; stop early when it won't fit.

Weights come from the file headers (shapes and dtypes, as the loader will hold them: floats at the compute dtype,
fp8 / fp4 storage as stored, Linears converted with `--weight-format fp8_e4m3fn`), or from the manifest's file sizes
when the files are not installed yet. Activations come from each family's formula (the registry's `memory`
hook, e.g. `videosdgx.wan.memory`): `phases(variant, files, weights, size, load, low_memory) -> [Phase]`.
When the peak does not fit, the plan names the settings that would (another bundle of the same variant, fp8 at
load, `--low-memory`, a smaller size, fewer frames) and the processes holding memory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from videosdgx.bundle_files import BundleFiles
from videosdgx.families import family
from videosdgx.manifest import Manifest, load_manifest
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import ConfigurationError, InsufficientMemoryError
from videosdgx.runtime.memory import GB, MemoryStatus, gpu_processes, host_processes, memory_status
from videosdgx.runtime.model_files import FP8_FORMATS, LoadRequest
from videosdgx.runtime.quantized_linear import (FP8_INPUT_SCALE_NAMES, FP8_SCALE_NAMES, MIN_QUANTIZED_NUMEL,
                                                NVFP4_OPTIONAL, NVFP4_REQUIRED)

PHASES = ("text encoding", "sampling", "decoding", "upsampling", "stage-2 sampling")
KEPT_AS_STORED = {*FP8_SCALE_NAMES, *FP8_INPUT_SCALE_NAMES, *NVFP4_REQUIRED, *NVFP4_OPTIONAL}  # quantisation scales
NOT_WEIGHTS = {"tokenizer", "special_tokens", "dit_index", "text_encoder_index", "text_encoder_config", "vae_config"}
STORED_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}  # by file name, for files not installed yet


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    frames: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}, {self.frames} frames"


@dataclass(frozen=True)
class Phase:
    """One stretch of a run: the models resident during it (name, bytes) and its activation peak (bytes)."""

    name: str
    resident: tuple[tuple[str, int], ...]
    activations: int

    @property
    def weights(self) -> int:
        return sum(size for _, size in self.resident)

    @property
    def peak(self) -> int:
        return self.weights + self.activations


@dataclass(frozen=True)
class MemoryPlan:
    bundle: str
    size: Size
    load: LoadRequest
    low_memory: bool
    phases: tuple[Phase, ...]
    status: MemoryStatus

    @property
    def peak(self) -> int:
        return max(phase.peak for phase in self.phases)

    @property
    def fits(self) -> bool:
        return self.peak <= self.status.usable

    def settings(self) -> str:
        parts = [self.bundle, str(self.size), str(self.load.dtype).removeprefix("torch.")]
        if self.load.weight_format != "default":
            parts.append(f"--weight-format {self.load.weight_format}")
        if self.low_memory:
            parts.append("--low-memory")
        return ", ".join(parts)

    def describe(self) -> str:
        """The plan as a table: phase, resident models, activations, predicted peak."""
        lines = [f"Memory plan for {self.settings()} on {self.status.device}:"]
        for phase in self.phases:
            resident = " + ".join(f"{name} {size / GB:.1f}" for name, size in phase.resident) or "nothing"
            lines.append(f"  {phase.name:<16} resident {resident} GB; activations {phase.activations / GB:.1f} GB; "
                         f"peak {phase.peak / GB:.1f} GB")
        pool = "shared CPU/GPU memory" if self.status.unified else "memory"
        verdict = "fits" if self.fits else "does NOT fit"
        lines.append(f"Predicted peak {self.peak / GB:.1f} GB; {self.status.usable / GB:.1f} GB of {pool} free: "
                     f"{verdict}.")
        return "\n".join(lines)


def stored_weight_bytes(paths: tuple[Path, ...], load: LoadRequest,
                        keys: Callable[[str], bool] | None = None) -> int:
    """Bytes the loader will hold for these files (or for their tensors whose key `keys` accepts), from their
    headers only (no weight is read)."""
    convert = load.weight_format in FP8_FORMATS
    total = 0
    for path in paths:
        with open_checkpoint(path) as checkpoint:
            for key in checkpoint.keys():
                if keys is not None and not keys(key):
                    continue
                info = checkpoint.info(key)
                numel = math.prod(info.shape)
                if not info.dtype.is_floating_point or info.dtype.itemsize == 1 or (
                        key.rpartition(".")[2] in KEPT_AS_STORED):
                    total += info.nbytes
                elif convert and len(info.shape) == 2 and key.endswith("weight") and numel >= MIN_QUANTIZED_NUMEL:
                    total += numel + 4
                else:
                    total += numel * load.dtype.itemsize
    return total


def manifest_weight_bytes(bundle: str, role: str, load: LoadRequest, manifest: Manifest) -> int:
    """Bytes the loader will hold for a role's files that are not installed, from the manifest's file sizes."""
    total = 0
    for entry in manifest.bundle_entries(bundle):
        if entry.role != role:
            continue
        name = entry.filename.lower()
        stored = next((b for tag, b in STORED_DTYPE_BYTES.items() if tag in name), 2)
        loaded = 1 if stored == 1 or (load.weight_format in FP8_FORMATS and role.startswith("dit")) else (
            load.dtype.itemsize)
        total += (entry.size or 0) * loaded // stored  # unknown sizes (null in the manifest) count 0
    return total


def role_weights(bundle: str, files: BundleFiles | None, load: LoadRequest, manifest: Manifest) -> dict[str, int]:
    """Loaded bytes per manifest role; `weight_format` converts only the diffusion model(s)."""
    roles = {entry.role for entry in manifest.bundle_entries(bundle)} - NOT_WEIGHTS
    weights = {}
    for role in roles:
        role_load = load if role.startswith("dit") else dataclasses.replace(load, weight_format="default")
        if files is not None and files.all(role):
            weights[role] = stored_weight_bytes(files.all(role), role_load)
        else:
            weights[role] = manifest_weight_bytes(bundle, role, role_load, manifest)
    return weights


def variant_of(manifest: Manifest, bundle: str) -> str:
    return manifest.bundle(bundle).variant or bundle


def plan_run(bundle: str, size: Size, load: LoadRequest, low_memory: bool, files: BundleFiles | None = None,
             status: MemoryStatus | None = None, manifest: Manifest | None = None) -> MemoryPlan:
    """The memory plan of one run of `bundle` at `size` (files: installed paths, or None for manifest sizes)."""
    manifest = manifest or load_manifest()
    row = family(manifest.bundle(bundle).family)
    variant = row.variant_table()[variant_of(manifest, bundle)]
    weights = role_weights(bundle, files, load, manifest)
    phases = row.hook("memory")(variant, files, weights, size, load, low_memory)
    unknown = [phase.name for phase in phases if phase.name not in PHASES]
    if unknown:
        raise ConfigurationError(f"{row.title}'s memory formula names unknown phases {unknown}; use {PHASES}.")
    return MemoryPlan(bundle, size, load, low_memory, tuple(phases), status or memory_status(load.device))


FilesOf = Callable[[str], "BundleFiles | None"]  # installed files of a bundle, or None (plan from the manifest)


@dataclass(frozen=True)
class Setting:
    """One run's choices, with the command-line options that differ from the plan's."""

    options: tuple[str, ...]
    bundle: str
    load: LoadRequest
    low_memory: bool
    size: Size


def _changes(plan: MemoryPlan, manifest: Manifest) -> dict[str, list[Setting]]:
    """Single changes to `plan` by what they change, cheapest first."""
    base = Setting((), plan.bundle, plan.load, plan.low_memory, plan.size)
    variant = variant_of(manifest, plan.bundle)
    changes: dict[str, list[Setting]] = {"bundle": [], "load": [], "low_memory": [], "size": []}
    for other in manifest.bundles:
        if other != plan.bundle and variant_of(manifest, other) == variant:
            changes["bundle"].append(dataclasses.replace(base, options=(f"--model {other}",), bundle=other))
    if plan.load.weight_format == "default":
        fp8 = dataclasses.replace(plan.load, weight_format="fp8_e4m3fn")
        changes["load"].append(dataclasses.replace(base, options=("--weight-format fp8_e4m3fn",), load=fp8))
    if not plan.low_memory:
        changes["low_memory"].append(dataclasses.replace(base, options=("--low-memory",), low_memory=True))
    width, height, frames = plan.size.width, plan.size.height, plan.size.frames
    fewer = max(1, (frames - 1) // 2 // 4 * 4 + 1)
    smaller = Size(max(16, width * 2 // 3 // 16 * 16), max(16, height * 2 // 3 // 16 * 16), frames)
    for size in (Size(width, height, fewer), smaller, Size(smaller.width, smaller.height, fewer)):
        options = tuple(f"--{name} {getattr(size, name)}" for name in ("width", "height", "frames")
                        if getattr(size, name) != getattr(plan.size, name))
        changes["size"].append(dataclasses.replace(base, options=options, size=size))
    return changes


def alternatives(plan: MemoryPlan, files_of: FilesOf | None = None, manifest: Manifest | None = None) -> list[str]:
    """Settings that would fit: every single change that does (another bundle of the variant, fp8 at load,
    --low-memory, fewer frames, a smaller size); if none does, the first combination of them that does."""
    manifest = manifest or load_manifest()

    def planned(setting: Setting) -> MemoryPlan:
        files = files_of(setting.bundle) if files_of else None
        return plan_run(setting.bundle, setting.size, setting.load, setting.low_memory, files, plan.status, manifest)

    def shown(setting: Setting, peak: int) -> str:
        return f"{' '.join(setting.options)} (peak {peak / GB:.1f} GB)"

    changes = _changes(plan, manifest)
    fits = [shown(s, p.peak) for group in changes.values() for s in group if (p := planned(s)).fits]
    if fits:
        return fits
    combined = Setting((), plan.bundle, plan.load, plan.low_memory, plan.size)
    if changes["bundle"]:
        combined = min(changes["bundle"], key=lambda s: planned(s).peak)
    for field in ("load", "low_memory"):
        for change in changes[field]:
            trial = dataclasses.replace(combined, options=combined.options + change.options,
                                        **{field: getattr(change, field)})
            if (p := planned(trial)).peak < planned(combined).peak:
                combined = trial
                if p.fits:
                    return [shown(combined, p.peak)]
    for change in changes["size"]:
        trial = dataclasses.replace(combined, options=combined.options + change.options, size=change.size)
        if (p := planned(trial)).fits:
            return [shown(trial, p.peak)]
    return []


def check_plan(plan: MemoryPlan, files_of: FilesOf | None = None) -> None:
    """Raise `InsufficientMemoryError` before anything loads when the plan does not fit; the message says which
    settings would fit and which processes hold memory."""
    if plan.fits:
        return
    lines = [plan.describe()]
    options = alternatives(plan, files_of)
    lines.append("These would fit: " + "; ".join(options) + "." if options else
                 "No smaller setting of this model fits: free memory first.")
    holders = [p for p in gpu_processes() if p.used_bytes] if plan.status.device.type == "cuda" else []
    holders = holders or host_processes()  # unified memory: nvidia-smi may not report per-process memory
    if holders:
        lines.append("Processes holding memory: " + ", ".join(
            f"pid {p.pid} {p.name} {p.used_bytes / GB:.1f} GB" for p in holders[:5]) + ".")
    raise InsufficientMemoryError("\n".join(lines))
