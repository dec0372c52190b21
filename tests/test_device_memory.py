"""Device selection, the torch.xpu guard and the memory preflight."""

import types

import pytest
import torch

from videosdgx.runtime.device import capabilities, install_xpu_guard, select_device
from videosdgx.runtime.errors import ConfigurationError, InsufficientMemoryError
from videosdgx.runtime.memory import MemoryStatus, check_memory, parse_nvidia_smi_apps, read_meminfo

GB = 1024**3


def test_select_device_auto_is_cpu_here_and_explicit_cuda_fails_clearly():
    assert select_device("auto").type == "cpu"
    with pytest.raises(ConfigurationError, match="no CUDA"):
        select_device("cuda")
    with pytest.raises(ConfigurationError, match="Unsupported device"):
        select_device("xpu")


def test_device_selection_works_on_a_torch_without_xpu(monkeypatch):
    """The ARM64 failure of the earlier attempt: `torch.xpu` missing must not matter to us."""
    monkeypatch.delattr(torch, "xpu", raising=False)
    assert select_device("auto").type == "cpu"
    assert capabilities(torch.device("cpu")).bf16 is True
    assert not hasattr(torch, "xpu")


def test_xpu_guard_installs_stub_when_missing(monkeypatch):
    monkeypatch.delattr(torch, "xpu", raising=False)
    install_xpu_guard()
    assert torch.xpu.is_available() is False and torch.xpu.device_count() == 0


def test_xpu_guard_leaves_existing_module(monkeypatch):
    marker = types.SimpleNamespace(is_available=lambda: True)
    monkeypatch.setattr(torch, "xpu", marker, raising=False)
    install_xpu_guard()
    assert torch.xpu is marker


def test_cpu_capabilities():
    caps = capabilities(torch.device("cpu"))
    assert caps.fp8_matmul is False and caps.fp4_matmul is False and caps.compute_capability is None


def test_meminfo_parsing(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       131072000 kB\nMemFree:  1000 kB\nMemAvailable:   65536000 kB\n")
    info = read_meminfo(str(path))
    assert info["MemTotal"] == 131072000 * 1024 and info["MemAvailable"] == 65536000 * 1024


def test_nvidia_smi_parsing_sorted_by_use():
    apps = parse_nvidia_smi_apps("1234, python3, 2048\n999, ollama, 119808\n[Not Supported]\n")
    assert [(p.pid, p.name) for p in apps] == [(999, "ollama"), (1234, "python3")]
    assert apps[0].used_bytes == 119808 * 1024**2


def unified(free_gb, host_gb):
    return MemoryStatus(torch.device("cuda"), free_gb * GB, 120 * GB, host_gb * GB, 128 * GB, unified=True)


def test_check_memory_passes_when_it_fits():
    status = check_memory(10 * GB, torch.device("cuda"), "Wan 1.3B", status=unified(50, 60), processes=[])
    assert status.usable == 50 * GB


def test_check_memory_names_holders_and_fix_on_unified_memory():
    holders = parse_nvidia_smi_apps("4242, vllm-server, 119808\n")
    with pytest.raises(InsufficientMemoryError) as err:
        check_memory(30 * GB, torch.device("cuda"), "LTX-2 19B", status=unified(3, 60), processes=holders)
    message = str(err.value)
    assert "LTX-2 19B needs 30.0 GB" in message and "only 3.0 GB is free" in message
    assert "pid 4242 vllm-server: 117.0 GB" in message
    assert "offloading to CPU frees nothing" in message and "shared CPU/GPU memory" in message


def test_check_memory_cpu_uses_host_available():
    status = MemoryStatus(torch.device("cpu"), None, None, 4 * GB, 24 * GB, unified=False)
    with pytest.raises(InsufficientMemoryError, match="needs 8.0 GB of memory but only 4.0 GB"):
        check_memory(8 * GB, torch.device("cpu"), "demo", status=status, processes=[])
