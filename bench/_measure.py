"""Shared benchmark helpers: resident-memory readings from /proc, a measured span, child processes, tables.

Every measurement runs in a fresh child process (`run_child`) so that peaks never mix. The child reports through a
JSON file. Memory is the process's resident set (RSS) from /proc/self/status: `VmHWM` is its peak, and writing
"5" to /proc/self/clear_refs resets that peak to the current RSS (Linux >= 4.0), so a span's peak excludes what
came before it (imports, model construction).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

GB = 1e9


def proc_status() -> dict[str, int]:
    """The memory lines of /proc/self/status, in bytes (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def reset_peak_rss() -> None:
    """Make VmHWM equal to the current RSS, so that the next reading is the peak from now on."""
    Path("/proc/self/clear_refs").write_text("5")


@dataclass
class Span:
    """Wall time and resident memory of one measured stretch of code; all sizes in bytes."""

    baseline: int = 0  # RSS at the start
    peak: int = 0  # VmHWM at the end (the highest RSS during the span)
    final: int = 0  # RSS at the end
    final_file: int = 0  # file-backed part of the final RSS (memory-mapped file pages still resident)
    seconds: float = 0.0
    _start: float = field(default=0.0, repr=False)

    @property
    def peak_increase(self) -> int:
        return self.peak - self.baseline

    @property
    def final_increase(self) -> int:
        return self.final - self.baseline

    def __enter__(self) -> "Span":
        reset_peak_rss()
        self.baseline = proc_status()["VmRSS"]
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        status = proc_status()
        self.peak, self.final, self.final_file = status["VmHWM"], status["VmRSS"], status["RssFile"]

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("_start")
        return data


def evict_from_page_cache(path: Path) -> None:
    """Drop the cached pages of one file (and only that file), so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Write every file under `path` to disk, so that `evict_from_page_cache` can drop its pages."""
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# glibc keeps freed heap memory resident and moves its mmap threshold with the workload, which made peak RSS of
# the same code vary by 15% between runs. A fixed threshold returns every large freed buffer to the OS at once,
# so peak RSS follows the tensors actually alive; both sides of every comparison run with the same setting.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def timed(run, repeat: int) -> tuple[object, list[dict]]:
    """`run()` `repeat` times, each in its own measured `Span`: the last output and the spans (as dicts)."""
    spans = []
    for _ in range(repeat):
        with Span() as span:
            out = run()
        spans.append(span.as_dict())
    return out, spans


def run_child(script: Path, args: list[str], result_file: Path) -> dict:
    """Run `python script *args --result result_file` in a fresh process and return the JSON it wrote."""
    result_file.unlink(missing_ok=True)
    command = [sys.executable, str(script), *args, "--result", str(result_file)]
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **CHILD_ENV})
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(result_file.read_text())


def write_result(path: str | os.PathLike, result: dict) -> None:
    Path(path).write_text(json.dumps(result))


def gb(n: float) -> str:
    return f"{n / GB:.3f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (it reads as plain text in a terminal too)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
