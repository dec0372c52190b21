"""The memory plan: weights from the file headers match what the loader holds, phases per family formula, and a
run that does not fit stops before loading with the settings that would fit and the processes holding memory."""

from __future__ import annotations

import pytest
import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.cli import main
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.plan import Size, alternatives, check_plan, plan_run
from videosdgx.runtime.errors import InsufficientMemoryError
from videosdgx.runtime.memory import MemoryStatus, host_processes
from videosdgx.runtime.model_files import LoadRequest, resident_weight_bytes
from videosdgx.testing.wan import write_wan_models
from videosdgx.wan.loaders import load_dit, load_text_encoder, load_vae

GB = 1024**3
SIZE = Size(832, 480, 81)


def status(free_gb: float) -> MemoryStatus:
    free = int(free_gb * GB)
    return MemoryStatus(torch.device("cuda"), free, free, free, free, unified=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    wan = write_wan_models("wan2.1-t2v-1.3b", tmp_path_factory.mktemp("models"))
    return BundleFiles("wan2.1-t2v-1.3b", {"dit": wan.dit, "vae": (wan.vae,), "text_encoder": (wan.text_encoder,)})


@pytest.mark.parametrize("weight_format", ["default", "fp8_e4m3fn"])
def test_planned_weights_are_what_the_loaders_hold(files, weight_format):
    load = LoadRequest(dtype=torch.bfloat16, weight_format=weight_format)
    plan = plan_run("wan2.1-t2v-1.3b", Size(64, 64, 5), load, False, files, status(100))
    resident = dict(plan.phases[0].resident)
    plain = LoadRequest(dtype=torch.bfloat16)
    assert resident["DiT"] == resident_weight_bytes(load_dit(files.one("dit"), load).module)
    assert resident["VAE"] == resident_weight_bytes(load_vae(files.one("vae"), plain).module)
    encoder = load_text_encoder(files.one("text_encoder"), plain).encoder
    with open_checkpoint(files.one("text_encoder")) as checkpoint:
        tokenizer_bytes = checkpoint.info("spiece_model").nbytes  # embedded in ComfyUI's file, not a weight
    assert resident["text encoder"] == resident_weight_bytes(encoder) + tokenizer_bytes


def test_phases_follow_the_pipeline_and_low_memory_frees_the_text_encoder():
    plan = plan_run("wan2.1-t2v-14b", SIZE, LoadRequest(torch.bfloat16), False, None, status(119))
    assert [p.name for p in plan.phases] == ["text encoding", "sampling", "decoding"]
    assert all("text encoder" in dict(p.resident) for p in plan.phases)
    low = plan_run("wan2.1-t2v-14b", SIZE, LoadRequest(torch.bfloat16), True, None, status(119))
    assert [("text encoder" in dict(p.resident)) for p in low.phases] == [True, False, False]
    assert low.peak < plan.peak
    two = plan_run("wan2.2-t2v-a14b", SIZE, LoadRequest(torch.bfloat16), False, None, status(119))
    assert {"DiT high", "DiT low"} <= set(dict(two.phases[1].resident))


def test_activations_grow_with_the_video():
    small = plan_run("wan2.1-t2v-1.3b", Size(416, 240, 33), LoadRequest(torch.bfloat16), False, None, status(119))
    large = plan_run("wan2.1-t2v-1.3b", SIZE, LoadRequest(torch.bfloat16), False, None, status(119))
    assert small.phases[1].weights == large.phases[1].weights
    assert large.phases[1].activations > 4 * small.phases[1].activations


def test_a_plan_that_does_not_fit_names_what_would(monkeypatch):
    monkeypatch.setattr("videosdgx.plan.gpu_processes", lambda: [])
    monkeypatch.setattr("videosdgx.plan.host_processes",
                        lambda: [type("P", (), {"pid": 42, "name": "ollama", "used_bytes": 90 * GB})()])
    plan = plan_run("wan2.1-t2v-14b", SIZE, LoadRequest(torch.bfloat16), False, None, status(40))
    assert not plan.fits
    options = alternatives(plan)
    assert any(o.startswith("--model wan2.1-t2v-14b-fp8") for o in options)
    assert any(o.startswith("--frames") for o in options) and any(o.startswith("--width") for o in options)
    with pytest.raises(InsufficientMemoryError) as error:
        check_plan(plan)
    message = str(error.value)
    assert "does NOT fit" in message and "These would fit: " in message
    assert "pid 42 ollama 90.0 GB" in message


def test_nothing_fits_says_free_memory_first(monkeypatch):
    monkeypatch.setattr("videosdgx.plan.host_processes", lambda: [])
    plan = plan_run("wan2.1-t2v-14b", SIZE, LoadRequest(torch.bfloat16), False, None, status(1))
    with pytest.raises(InsufficientMemoryError, match="No smaller setting of this model fits: free memory first"):
        check_plan(plan)


def test_plan_command(capsys, tmp_path):
    assert main(["plan", "--model", "wan2.1-t2v-14b", "--memory-gb", "119", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not installed" in out and "sampling" in out and "fits." in out
    assert main(["plan", "--model", "wan2.1-t2v-14b", "--memory-gb", "50", "--models-dir", str(tmp_path)]) == 1
    assert "These would fit: " in capsys.readouterr().out


def test_plan_command_unknown_bundle(caplog, tmp_path):
    assert main(["plan", "--model", "wan9", "--models-dir", str(tmp_path)]) == 2
    assert "No model bundle 'wan9'" in caplog.text and "install.py --list" in caplog.text


def test_host_processes_largest_first(tmp_path):
    for pid, name, kb in ((10, "ollama", 9000000), (11, "python", 100), (12, "me", 5)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text(f"Name:\t{name}\nVmRSS:\t{kb} kB\n")
    found = host_processes(str(tmp_path), skip_pid=12)
    assert [(p.pid, p.name) for p in found] == [(10, "ollama"), (11, "python")]
    assert found[0].used_bytes == 9000000 * 1024


def test_when_no_single_change_fits_a_combination_is_named(monkeypatch):
    monkeypatch.setattr("videosdgx.plan.host_processes", lambda: [])
    plan = plan_run("wan2.1-t2v-14b", Size(1280, 720, 81), LoadRequest(torch.bfloat16), False, None, status(30))
    options = alternatives(plan)
    assert len(options) == 1 and options[0].startswith("--model wan2.1-t2v-14b-fp8 --low-memory --frames 41 (peak")
    assert "--weight-format" not in options[0]  # converting an fp8 file to fp8 saves nothing


def test_generate_stops_before_loading_when_the_plan_does_not_fit(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("videosdgx.plan.memory_status", lambda device: MemoryStatus(device, None, None, 1024, GB,
                                                                                     unified=False))
    monkeypatch.setattr("videosdgx.plan.host_processes", lambda: [])
    loaded = []
    monkeypatch.setattr("videosdgx.wan.pipeline.load_dit", lambda *a, **k: loaded.append(a))
    out = tmp_path / "v.mp4"
    code = main(["generate", "--demo", "--prompt", "a cat", "--width", "64", "--height", "64", "--frames", "5",
                 "--steps", "1", "--device", "cpu", "--out", str(out)])
    assert code == 1 and not out.exists() and loaded == []
    assert "does NOT fit" in caplog.text and "sampling" in caplog.text
    assert "No smaller setting of this model fits: free memory first." in caplog.text

