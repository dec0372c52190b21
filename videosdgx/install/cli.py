"""`python install.py` options: list bundles, plan (--dry-run), download (--models) and verify installed files."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from videosdgx.manifest import Manifest, load_manifest
from videosdgx.paths import default_models_dir
from videosdgx.runtime.errors import CheckpointError, VideosDGXError
from videosdgx.install.comfyui import ModelFolders, find_comfyui, model_folders
from videosdgx.install.download import install
from videosdgx.install.errors import DownloadInterrupted
from videosdgx.install.folders import verify_installed
from videosdgx.install.plan import Plan, entry_size, find_installed, format_size, installed_candidates, plan_install

log = logging.getLogger(__name__)

EXAMPLE_BUNDLE = "wan2.1-t2v-1.3b"
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
USAGE = 64  # a command line that cannot be used, as for `videosdgx`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python install.py",
        description="Install VideosDGX requirements (no arguments) or download model bundles into ComfyUI's folders.",
    )
    parser.add_argument("--list", action="store_true", help="list the model bundles and what is installed")
    parser.add_argument("--models", nargs="+", metavar="BUNDLE", default=[], help="download these bundles")
    parser.add_argument("--dry-run", action="store_true", help="with --models: show the plan, download nothing")
    parser.add_argument("--verify", action="store_true", help="check installed files (of --models, or of all bundles)")
    parser.add_argument("--comfyui", type=Path, help="ComfyUI folder (default: found from the current folder, "
                        "$COMFYUI_PATH, ~/ComfyUI)")
    parser.add_argument("--models-dir", type=Path, help="a plain models folder to use instead of ComfyUI's")
    parser.add_argument("--extra-model-paths-config", type=Path, action="append", default=[], metavar="YAML",
                        help="an extra_model_paths.yaml that ComfyUI is started with (besides its own)")
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the installer CLI; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.dry_run and not args.models:
            parser.error("--dry-run shows the plan for --models BUNDLE...; name the bundles to plan")
    except SystemExit as exc:  # argparse: 0 after --help, 2 for a command line it cannot parse
        return USAGE if exc.code == 2 else int(exc.code or 0)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = load_manifest(args.manifest)
        if args.list:
            sys.stdout.write(format_list(manifest, _folders_or_none(args)))
            return 0
        if args.verify:
            return _verify(manifest, _folders(args), args.models)
        if args.models:
            folders = _folders(args)
            plan = plan_install(manifest, args.models, folders)
            if args.dry_run:
                sys.stdout.write(format_plan(plan, folders))
                return 0
            install(plan, manifest, folders)
            sys.stdout.write(f"Done: {len(plan.files)} files of {', '.join(args.models)} are installed.\n")
            return 0
        sys.stdout.write(next_steps(manifest, _folders_or_none(args)))
        return 0
    except DownloadInterrupted as exc:
        log.error("%s", exc)
        return INTERRUPTED
    except KeyboardInterrupt:
        log.error("Interrupted by the user. Nothing half-done was put in a model folder; run the same command "
                  "again to continue.")
        return INTERRUPTED
    except VideosDGXError as exc:
        log.error("%s", exc)
        return 1


def _folders(args: argparse.Namespace) -> ModelFolders:
    """--models-dir, --comfyui, a ComfyUI found around us, else the default models folder (no ComfyUI needed)."""
    comfyui = args.comfyui
    if comfyui is None and args.models_dir is None:
        comfyui = find_comfyui(Path.cwd(), os.environ, Path.home())
        if comfyui is None:
            log.info("ComfyUI not found (current folder, $COMFYUI_PATH, ~/ComfyUI): using %s", default_models_dir())
            return model_folders(None, default_models_dir(), args.extra_model_paths_config)
    return model_folders(comfyui, args.models_dir, args.extra_model_paths_config)


def _folders_or_none(args: argparse.Namespace) -> ModelFolders | None:
    try:
        return _folders(args)
    except VideosDGXError as exc:
        log.warning("%s Showing bundles without their install state.", exc)
        return None


def format_list(manifest: Manifest, folders: ModelFolders | None) -> str:
    """One line per bundle: name, status, size, install state, description."""
    where = f"model folders under {folders.models_dir}" if folders else "ComfyUI not found"
    lines = [
        f"VideosDGX model bundles ({where}).",
        "Sizes with ~ are estimates, + means some file sizes are unknown, * that some files are listed on the Hub",
        "at install time (their exact size is known then). The memory a bundle needs is estimated from its file",
        "sizes (weights only; activations come on top).",
        "",
        f"  {'bundle':<26} {'status':<22} {'size ≈ memory':>14}  {'installed':<10} description",
    ]
    installed = _installed_entries(manifest, folders)
    for bundle in manifest.bundles.values():
        if bundle.status == "not_released":
            lines.append(f"  {bundle.name:<26} {'not released':<22} {'-':>14}  {'-':<10} {bundle.description}")
            continue
        entries = manifest.bundle_entries(bundle.name)
        size, exact = manifest.bundle_size(bundle.name)
        status = bundle.status + (", gated" if any(e.gated for e in entries) else "")
        state = "-"
        if folders is not None:
            present = sum(e.id in installed for e in entries)
            state = "yes" if present == len(entries) else f"{present}/{len(entries)}"
        size_text = (format_size(size, exact) + ("+" if any(e.size is None for e in entries) else "")
                     + ("*" if any(e.is_folder for e in entries) else ""))
        lines.append(f"  {bundle.name:<26} {status:<22} {size_text:>14}  {state:<10} {bundle.description}")
    lines += ["", "planned = nodes not implemented yet (files can be downloaded); gated = needs HF_TOKEN and the",
              "licence accepted on huggingface.co. Install one with: python install.py --models BUNDLE", ""]
    not_released = [b for b in manifest.bundles.values() if b.status == "not_released"]
    lines += [f"{b.name}: {b.message}" for b in not_released]
    return "\n".join(lines) + "\n"


def _installed_entries(manifest: Manifest, folders: ModelFolders | None) -> set[str]:
    """Ids of the entries with a valid copy installed, each file checked (and warned about) once."""
    if folders is None:
        return set()
    ids = dict.fromkeys(i for b in manifest.bundles.values() if b.status != "not_released" for i in b.entries)
    return {i for i in ids if find_installed(manifest.entry(i), folders) is not None}


def format_plan(plan: Plan, folders: ModelFolders) -> str:
    """What `--models` would do: every file with size and destination, then the disk check."""
    names = ", ".join(b.name for b in plan.bundles)
    lines = [f"Plan for {names} (model folders under {folders.models_dir}):"]
    for f in plan.files:
        size = entry_size(f.entry)
        if f.missing:
            lines.append(f"  download  {f.entry.id:<36} {size:>12}  -> {f.destination}")
        else:
            lines.append(f"  present   {f.entry.id:<36} {size:>12}  at {f.installed}")
    missing = plan.missing
    total = sum(f.entry.size or 0 for f in missing)
    exact = all(f.entry.size_verified for f in missing)
    folders_text = sum(f.entry.is_folder for f in missing)
    folders_text = (f" ({folders_text} repo folder{'s' if folders_text > 1 else ''} whose exact size is known at "
                    "install time, counted at the estimate)") if folders_text else ""
    lines.append(f"To download: {len(missing)} of {len(plan.files)} files, {format_size(total, exact)}{folders_text}.")
    for disk in plan.disk():
        verdict = "enough" if disk.enough else "NOT ENOUGH"
        lines.append(f"Disk at {disk.folder}: needs {format_size(disk.needed)}, {format_size(disk.free)} free "
                     f"({verdict}).")
    gated = [f.entry for f in missing if f.entry.gated]
    if gated:
        lines.append("Gated repos (accept the licence on huggingface.co and set HF_TOKEN): "
                     + ", ".join(sorted({e.repo for e in gated})) + ".")
    return "\n".join(lines) + "\n"


def _verify(manifest: Manifest, folders: ModelFolders, bundle_names: list[str]) -> int:
    """Check size, sha256 and header of installed files; missing files count as failures for named bundles."""
    names = bundle_names or [b.name for b in manifest.bundles.values() if b.status != "not_released"]
    entry_ids = list(dict.fromkeys(e for name in names for e in manifest.bundle(name).entries))
    failed, lines = 0, []
    for entry_id in entry_ids:
        entry = manifest.entry(entry_id)
        found = installed_candidates(entry, folders)
        if not found:
            failed += bool(bundle_names)
            lines.append(f"  missing  {entry.id}")
            continue
        try:
            verify_installed(found[0], entry)
            lines.append(f"  ok       {entry.id}  {found[0]}")
        except CheckpointError as exc:
            failed += 1
            lines.append(f"  BAD      {entry.id}  {exc}")
    lines.append(f"{len(entry_ids)} files checked, {failed} problem{'s' if failed != 1 else ''}.")
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if failed else 0


def next_steps(manifest: Manifest, folders: ModelFolders | None = None) -> str:
    """What to do after the requirements are installed (no model is downloaded automatically)."""
    available = [b for b in manifest.bundles.values() if b.status == "available"]
    installed = _installed_entries(manifest, folders)
    ready = [b.name for b in available if all(i in installed for i in b.entries)]
    return (
        "VideosDGX is installed. Models are not downloaded automatically.\n"
        "  List the bundles, their sizes and what is installed:  python install.py --list\n"
        f"  Download one (example):  python install.py --models {EXAMPLE_BUNDLE}\n"
        "  See the plan first:  add --dry-run.  Check installed files:  python install.py --verify\n"
        f"Bundles with working nodes (download them with --models): {', '.join(b.name for b in available)}.\n"
        + ("" if folders is None else f"Installed and ready to use: {', '.join(ready) if ready else 'none yet'}.\n")
    )
