"""Device selection and capabilities. Never touches `torch.xpu` (absent on some ARM64 builds)."""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

UNIFIED_MEMORY_GPUS = ("GB10", "GH200", "GB200", "Jetson", "Orin", "Thor")


def install_xpu_guard() -> None:
    """Give torch a harmless `torch.xpu` when the build has none, so third-party probes do not crash.

    Some ARM64 torch builds have no `torch.xpu`; libraries that call `torch.xpu.is_available()` then raise
    AttributeError. The stub reports no XPU devices. It is never used by VideosDGX itself.
    """
    if hasattr(torch, "xpu"):
        return
    stub = types.ModuleType("torch.xpu")
    stub.is_available = lambda: False
    stub.device_count = lambda: 0
    stub.is_initialized = lambda: False
    stub.empty_cache = lambda: None
    stub.synchronize = lambda device=None: None
    torch.xpu = stub
    log.debug("installed a torch.xpu stub (this torch build has no XPU support)")


def select_device(preference: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu. An explicit unavailable device is an error, never a silent fallback."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    from videosdgx.runtime.errors import ConfigurationError

    try:
        device = torch.device(preference)
    except RuntimeError:
        raise ConfigurationError(f"Unsupported device '{preference}'. Use auto, cuda, cuda:N, mps or cpu.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"Device '{preference}' was asked for but this torch has no CUDA ({torch.__version__}). Install a CUDA "
            "build of torch (on DGX Spark: the CUDA 13 aarch64 wheels) or use --device cpu."
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigurationError(
            f"Device '{preference}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s), "
            "numbered from 0."
        )
    if device.type not in ("cuda", "mps", "cpu"):
        raise ConfigurationError(f"Unsupported device '{preference}'. Use auto, cuda, cuda:N, mps or cpu.")
    return device


@dataclass(frozen=True)
class Capabilities:
    """What a device can do, as far as model loading and kernels are concerned."""

    device: torch.device
    name: str
    compute_capability: tuple[int, int] | None
    bf16: bool
    fp8_matmul: bool
    fp4_matmul: bool
    unified_memory: bool


def capabilities(device: torch.device) -> Capabilities:
    """Capability flags: bf16, fp8 matmul (sm >= 8.9), FP4 (Blackwell, sm >= 10.0), unified CPU/GPU memory."""
    if device.type != "cuda":
        name = "Apple GPU" if device.type == "mps" else "CPU"
        return Capabilities(device, name, None, bf16=True, fp8_matmul=False, fp4_matmul=False,
                            unified_memory=device.type == "mps")
    props = torch.cuda.get_device_properties(device)
    cc = (props.major, props.minor)
    integrated = bool(getattr(props, "is_integrated", False))
    unified = integrated or any(tag in props.name for tag in UNIFIED_MEMORY_GPUS)
    return Capabilities(
        device,
        props.name,
        cc,
        bf16=torch.cuda.is_bf16_supported(),
        fp8_matmul=cc >= (8, 9),
        fp4_matmul=cc >= (10, 0),
        unified_memory=unified,
    )


def default_dtype(device: torch.device) -> torch.dtype:
    """The compute dtype to use on `device`: bf16 where supported, fp32 on CPU."""
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if capabilities(device).bf16 else torch.float16
