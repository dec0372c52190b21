"""The memory plan of SkyReels V3 and MAGI-1 bundles: `videosdgx plan` for each bundle, the task's tokens, and
plans from tiny demo files (weights from their headers)."""

from __future__ import annotations

import pytest
import torch

from videosdgx.bundle_files import find_bundle_files
from videosdgx.cli import main
from videosdgx.families import family
from videosdgx.install.comfyui import model_folders
from videosdgx.manifest import load_manifest
from videosdgx.plan import Size, plan_run
from videosdgx.runtime.memory import MemoryStatus
from videosdgx.runtime.model_files import LoadRequest

GB = 1024**3
BF16 = LoadRequest(torch.bfloat16)
BUNDLES = sorted(name for name, b in load_manifest().bundles.items() if b.family in ("skyreels_v3", "magi1"))


def status(free_gb: float) -> MemoryStatus:
    free = int(free_gb * GB)
    return MemoryStatus(torch.device("cuda"), free, free, free, free, unified=True)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_plan_command_for_every_bundle(bundle, capsys, tmp_path):
    assert main(["plan", "--model", bundle, "--memory-gb", "119", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"Memory plan for {bundle}, " in out and "fits." in out
    for phase in ("text encoding", "sampling", "decoding"):
        assert f"  {phase} " in out


def test_a_plan_that_does_not_fit_names_what_would(capsys, tmp_path):
    assert main(["plan", "--model", "skyreels-v3-r2v-14b", "--memory-gb", "40", "--models-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "These would fit: --width " in out


def test_skyreels_tokens_per_task():
    size = Size(832, 480, 81)
    r2v = plan_run("skyreels-v3-r2v-14b", size, BF16, False, None, status(119))
    wan = plan_run("wan2.1-t2v-14b", size, BF16, False, None, status(119))
    latent_frames = (81 - 1) // 4 + 1
    ratio = r2v.phases[1].activations / (wan.phases[1].activations / 2)  # Wan's CFG batch of 2, R2V's passes 1 by 1
    assert ratio == pytest.approx((latent_frames + 4) / latent_frames)  # four reference latent frames
    v2v = dict((p.name, p) for p in plan_run("skyreels-v3-v2v-14b", size, BF16, False, None, status(119)).phases)
    assert {"DiT", "shot DiT"} <= set(dict(v2v["sampling"].resident))
    a2v = dict(plan_run("skyreels-v3-a2v-19b", size, BF16, True, None, status(119)).phases[1].resident)
    assert {"DiT", "CLIP vision", "wav2vec2", "VAE"} <= set(a2v) and "text encoder" not in a2v


def test_magi1_kv_cache_and_chunks_grow_with_the_frame_not_the_length():
    short = plan_run("magi-1-4.5b-distill", Size(720, 720, 48), BF16, False, None, status(119))
    long = plan_run("magi-1-4.5b-distill", Size(720, 720, 480), BF16, False, None, status(119))
    assert short.phases[1].activations == long.phases[1].activations  # chunks in flight + cache: per frame size
    small = plan_run("magi-1-4.5b-distill", Size(480, 480, 96), BF16, False, None, status(119))
    assert small.phases[1].activations < 0.5 * short.phases[1].activations
    assert long.phases[2].activations > short.phases[2].activations  # decoded frames are kept
    low = plan_run("magi-1-4.5b-distill", Size(720, 720, 96), BF16, True, None, status(119))
    assert [("T5" in dict(p.resident)) for p in low.phases] == [True, False, False]


@pytest.mark.parametrize("bundle", ["skyreels-v3-r2v-14b", "magi-1-4.5b-distill"])
def test_plan_from_demo_files(bundle, tmp_path):
    row = family(load_manifest().bundle(bundle).family)
    row.hook("demo")(bundle, tmp_path)
    files = find_bundle_files(bundle, model_folders(models_dir=tmp_path))
    plan = plan_run(bundle, Size(64, 64, 9), LoadRequest(), False, files, status(119))
    assert [p.name for p in plan.phases] == ["text encoding", "sampling", "decoding"]
    assert 0 < plan.phases[0].weights < 0.5 * GB and all(p.activations > 0 for p in plan.phases)


@pytest.mark.parametrize("bundle", ["magi-1-4.5b-distill", "skyreels-v3-r2v-14b"])
def test_generate_checks_the_plan_before_loading(bundle, tmp_path, caplog, monkeypatch):
    from PIL import Image

    monkeypatch.setattr("videosdgx.plan.memory_status", lambda device: MemoryStatus(device, None, None, 1024, GB,
                                                                                     unified=False))
    monkeypatch.setattr("videosdgx.plan.host_processes", lambda: [])
    Image.new("RGB", (40, 30), (200, 40, 50)).save(tmp_path / "ref.png")
    extra = ["--reference", str(tmp_path / "ref.png")] if bundle.startswith("skyreels") else []
    out = tmp_path / "v.mp4"
    code = main(["generate", "--demo", "--model", bundle, "--prompt", "rain", "--width", "64", "--height", "64",
                 "--frames", "24", "--device", "cpu", "--out", str(out), *extra])
    assert code == 1 and not out.exists()
    assert f"Memory plan for {bundle}, 64x64, " in caplog.text and "does NOT fit" in caplog.text
