"""Memory preflight: compare what a job needs with what is free, and name what holds the rest."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from videosdgx.runtime.device import capabilities
from videosdgx.runtime.errors import InsufficientMemoryError

log = logging.getLogger(__name__)

GB = 1024**3


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str
    used_bytes: int


@dataclass(frozen=True)
class MemoryStatus:
    """Free memory for a job on `device`. On unified-memory machines GPU and host share one pool."""

    device: torch.device
    device_free: int | None
    device_total: int | None
    host_available: int
    host_total: int
    unified: bool

    @property
    def usable(self) -> int:
        """Bytes a job may use: the shared pool on unified machines, device memory on discrete GPUs, host on CPU."""
        if self.device.type == "cpu" or self.device_free is None:
            return self.host_available
        if self.unified:
            return min(self.device_free, self.host_available)
        return self.device_free


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """`/proc/meminfo` in bytes (empty on systems without it)."""
    values: dict[str, int] = {}
    try:
        for line in Path(path).read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                values[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    except OSError:
        pass
    return values


def memory_status(device: torch.device) -> MemoryStatus:
    info = read_meminfo()
    host_total = info.get("MemTotal", 0)
    host_available = info.get("MemAvailable", info.get("MemFree", 0))
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return MemoryStatus(device, free, total, host_available, host_total, capabilities(device).unified_memory)
    return MemoryStatus(device, None, None, host_available, host_total, device.type == "mps")


def gpu_processes() -> list[GpuProcess]:
    """Processes holding GPU memory, via nvidia-smi when present (empty list otherwise)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi_apps(out)


def host_processes(proc: str = "/proc", skip_pid: int | None = None) -> list[GpuProcess]:
    """Other processes by resident memory, largest first (on unified memory they hold the GPU's pool too)."""
    skip_pid = os.getpid() if skip_pid is None else skip_pid
    processes = []
    for status in Path(proc).glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            pid = int(status.parent.name)
            rss = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        except (OSError, ValueError):
            continue
        if pid != skip_pid and rss:
            processes.append(GpuProcess(pid, fields.get("Name", "?").strip(), rss))
    return sorted(processes, key=lambda p: -p.used_bytes)


def parse_nvidia_smi_apps(text: str) -> list[GpuProcess]:
    """Parse `nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits`."""
    processes = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        used = int(parts[2]) * 1024**2 if parts[2].isdigit() else 0
        processes.append(GpuProcess(int(parts[0]), parts[1], used))
    return sorted(processes, key=lambda p: -p.used_bytes)


def check_memory(required: int, device: torch.device, what: str, status: MemoryStatus | None = None,
                 processes: list[GpuProcess] | None = None) -> MemoryStatus:
    """Raise `InsufficientMemoryError` when `required` bytes do not fit; the message lists holders and fixes."""
    status = status or memory_status(device)
    if required <= status.usable:
        log.info("%s needs %.1f GB, %.1f GB free on %s", what, required / GB, status.usable / GB, device)
        return status
    pool = "shared CPU/GPU memory" if status.unified else ("GPU memory" if device.type == "cuda" else "memory")
    lines = [f"{what} needs {required / GB:.1f} GB of {pool} but only {status.usable / GB:.1f} GB is free on {device}."]
    holders = processes if processes is not None else (gpu_processes() if device.type == "cuda" else [])
    if holders:
        lines.append("Processes holding GPU memory:")
        lines += [f"  pid {p.pid} {p.name}: {p.used_bytes / GB:.1f} GB" for p in holders[:8]]
    fixes = ["stop the processes above (or other model servers) that hold memory"] if holders else []
    if status.unified:
        fixes.append("on unified memory, offloading to CPU frees nothing: use the fp8 or NVFP4 files of the model")
    else:
        fixes.append("use the fp8 files of the model or enable fp8 conversion at load")
    fixes.append("lower the resolution or frame count, or choose a smaller variant")
    lines.append("To fix: " + "; ".join(fixes) + ".")
    raise InsufficientMemoryError("\n".join(lines))
