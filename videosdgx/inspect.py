"""`videosdgx inspect FILE...`: say what each model file is, or why it cannot be used."""

from __future__ import annotations

from pathlib import Path

from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import VideosDGXError
from videosdgx.runtime.identify import identify


def inspect_file(path: str | Path) -> tuple[bool, str]:
    """(usable, one report paragraph) for one file, folder or shard index."""
    try:
        with open_checkpoint(path) as checkpoint:
            identity = identify(checkpoint)
    except VideosDGXError as exc:
        return False, f"{path}: UNUSABLE\n  {exc}"
    lines = [
        f"{path}:",
        f"  model:      {identity.variant} {identity.component} ({identity.family})",
        f"  layout:     {identity.layout}",
        f"  dtype:      {identity.dtype}" + ("" if identity.quantization == "none" else f" ({identity.quantization})"),
        f"  parameters: {identity.parameters:,} ({identity.parameters / 1e9:.3g}B)",
        f"  size:       {identity.nbytes / 1e9:.3f} GB in {len(checkpoint.files)} file(s)",
        f"  load with:  {identity.loader}",
    ]
    lines += [f"  note:       {note}" for note in identity.notes]
    return True, "\n".join(lines)


def inspect_files(paths: list[str]) -> int:
    """Print a report for each path; exit status 0 only when every file is usable."""
    ok = True
    for path in paths:
        usable, report = inspect_file(path)
        print(report)
        ok &= usable
    return 0 if ok else 1
