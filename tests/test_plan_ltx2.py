"""LTX-2's memory plan: phases of the (two-stage) pipeline for every bundle, weights per loaded model from the
installed files' headers, and `generate` checking the plan before anything loads."""

from __future__ import annotations

import logging

import pytest
import torch

from videosdgx.bundle_files import find_bundle_files
from videosdgx.cli import main
from videosdgx.families import family
from videosdgx.install.comfyui import model_folders
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.media_loaders import load_video_vae
from videosdgx.manifest import load_manifest
from videosdgx.plan import Size, alternatives, plan_run, variant_of
from videosdgx.runtime.errors import InsufficientMemoryError
from videosdgx.runtime.memory import MemoryStatus
from videosdgx.runtime.model_files import LoadRequest, resident_weight_bytes
from videosdgx.testing import ltx25
from videosdgx.testing.ltx2 import DEMO_BUNDLES

GB = 1024**3
BF16 = LoadRequest(torch.bfloat16)
BUNDLES = sorted(name for name, b in load_manifest().bundles.items() if b.family == "ltx2")


def status(free_gb: float) -> MemoryStatus:
    free = int(free_gb * GB)
    return MemoryStatus(torch.device("cuda"), free, free, free, free, unified=True)


def default_size(bundle: str) -> Size:
    manifest = load_manifest()
    variant = family("ltx2").variant_table()[variant_of(manifest, bundle)]
    return Size(variant.width, variant.height, variant.frames)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_bundle_is_planned_at_its_default_size_from_the_manifest(bundle):
    plan = plan_run(bundle, default_size(bundle), BF16, False, None, status(119))
    names = [p.name for p in plan.phases]
    two_stage = "spatial-upscaler" in " ".join(e.filename for e in load_manifest().bundle_entries(bundle))
    expected = ["text encoding", "sampling"] + (["upsampling", "stage-2 sampling"] if two_stage else []) + [
        "decoding"]
    assert names == expected
    assert all("Gemma" in dict(p.resident) for p in plan.phases)
    assert all(p.activations > 0 for p in plan.phases)
    assert 15 * GB < plan.phases[0].weights < 80 * GB
    low = plan_run(bundle, default_size(bundle), BF16, True, None, status(119))
    assert [("Gemma" in dict(p.resident)) for p in low.phases] == [True] + [False] * (len(names) - 1)
    assert low.peak < plan.peak


def test_the_dit_is_split_from_a_full_precision_checkpoint_so_fp8_at_load_halves_it():
    size = default_size("ltx-2-19b-dev")
    plain = dict(plan_run("ltx-2-19b-dev", size, BF16, False, None, status(119)).phases[1].resident)
    fp8 = dict(plan_run("ltx-2-19b-dev", size, LoadRequest(torch.bfloat16, weight_format="fp8_e4m3fn"), False,
                        None, status(119)).phases[1].resident)
    assert 17e9 < fp8["DiT"] < 20e9 and plain["DiT"] == 2 * fp8["DiT"]
    assert plain["VAEs, vocoder, text projection"] == fp8["VAEs, vocoder, text projection"] > 1e9
    quantised = dict(plan_run("ltx-2-19b-dev-fp8", size, BF16, False, None, status(119)).phases[1].resident)
    assert "checkpoint" in quantised and "DiT" not in quantised


def test_dev_guidance_batches_its_passes_and_the_refining_stage_runs_alone():
    size = default_size("ltx-2-19b-dev")
    dev = plan_run("ltx-2-19b-dev", size, BF16, False, None, status(119))
    distilled = plan_run("ltx-2-19b-distilled", size, BF16, False, None, status(119))
    by_name = lambda plan: {p.name: p.activations for p in plan.phases}  # noqa: E731
    assert by_name(dev)["sampling"] == 4 * by_name(distilled)["sampling"]  # cond, uncond, perturbed, isolated
    assert by_name(dev)["stage-2 sampling"] == by_name(distilled)["stage-2 sampling"]
    assert by_name(dev)["text encoding"] == 2 * by_name(distilled)["text encoding"]  # with the negative prompt
    one_by_one = plan_run("ltx-2-19b-dev", size, BF16, True, None, status(119))
    assert by_name(one_by_one)["sampling"] == by_name(distilled)["sampling"]


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    family("ltx2").hook("demo")("ltx-2-19b-distilled", models)
    return find_bundle_files("ltx-2-19b-distilled", model_folders(models_dir=models))


def test_plan_from_demo_files_holds_what_the_loaders_hold(demo_files):
    plan = plan_run("ltx-2-19b-distilled", Size(256, 128, 17), LoadRequest(), False, demo_files, status(119))
    resident = dict(plan.phases[0].resident)
    checkpoint = demo_files.one("checkpoint")
    assert resident["DiT"] == resident_weight_bytes(load_dit(checkpoint, LoadRequest()).module)
    assert resident["video VAE"] == resident_weight_bytes(load_video_vae(checkpoint, LoadRequest()).module)
    assert {"text projection", "audio VAE + vocoder", "upsampler", "Gemma"} <= set(resident)
    fp8_load = LoadRequest(weight_format="fp8_e4m3fn")
    fp8 = dict(plan_run("ltx-2-19b-distilled", Size(256, 128, 17), fp8_load, False, demo_files,
                        status(119)).phases[0].resident)
    assert fp8["DiT"] == resident_weight_bytes(load_dit(checkpoint, fp8_load).module)
    assert fp8["video VAE"] == resident["video VAE"]


def test_generate_logs_the_plan(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "v.mp4"
    assert main(["generate", "--demo", "--model", "ltx-2-19b-distilled", "--prompt", "rain", "--width", "128",
                 "--height", "64", "--frames", "9", "--steps", "1", "--out", str(out)]) == 0
    assert "Memory plan for ltx-2-19b-distilled, 128x64, 9 frames" in caplog.text
    assert "stage-2 sampling" in caplog.text and out.exists()


def test_generate_stops_before_loading_and_names_what_would_fit(tmp_path, caplog, monkeypatch, demo_files):
    size = Size(512, 256, 33)
    full = plan_run("ltx-2-19b-distilled", size, LoadRequest(), False, demo_files, status(119))
    budget = int(full.peak * 0.9)
    monkeypatch.setattr("videosdgx.plan.memory_status", lambda device: MemoryStatus(device, None, None, budget, GB,
                                                                                     unified=False))
    monkeypatch.setattr("videosdgx.plan.host_processes", lambda: [])
    loaded = []
    monkeypatch.setattr("videosdgx.ltx2.pipeline.load_dit", lambda *a, **k: loaded.append(a))
    out = tmp_path / "v.mp4"
    code = main(["generate", "--demo", "--model", "ltx-2-19b-distilled", "--prompt", "rain", "--width", "512",
                 "--height", "256", "--frames", "33", "--device", "cpu", "--out", str(out)])
    assert code == 1 and not out.exists() and loaded == []
    assert "does NOT fit" in caplog.text and "These would fit: " in caplog.text
    assert "--frames 17" in caplog.text


def test_a_budget_too_small_for_the_bf16_dev_model_names_the_fp8_bundle_and_low_memory():
    plan = plan_run("ltx-2-19b-dev", default_size("ltx-2-19b-dev"), BF16, False, None, status(64))
    assert not plan.fits
    options = alternatives(plan)
    assert any(o.startswith("--model ltx-2-19b-dev-fp8") for o in options)
    assert any(o.startswith("--low-memory") for o in options)


def test_plan_command_for_ltx2(capsys, tmp_path):
    assert main(["plan", "--model", "ltx-2.3-22b-distilled", "--memory-gb", "119", "--models-dir",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Memory plan for ltx-2.3-22b-distilled, 768x512, 121 frames" in out and "fits." in out


def test_sampler_node_checks_the_stage_peaks_before_sampling(comfy_pack, tmp_path, monkeypatch):
    family("ltx2").hook("demo")("ltx-2-19b-distilled", tmp_path / "models")
    comfy_pack.folder_paths.set_base(tmp_path, folders=("checkpoints", "text_encoders", "latent_upscale_models"))
    run = lambda node, **inputs: comfy_pack.nodes[node].execute(**inputs).args  # noqa: E731
    ckpt = "ltx-2-19b-distilled.safetensors"
    model, = run("VideosDGXLTX2Loader", variant="ltx-2-19b-distilled", ckpt_name=ckpt, distilled_lora="none",
                 weight_dtype="default", weight_format="default")
    encoder, = run("VideosDGXLTX2TextEncoderLoader", text_encoder_name="gemma_3_12B_it_fp8_scaled.safetensors",
                   ckpt_name=ckpt, weight_dtype="default")
    vae, = run("VideosDGXLTX2VAELoader", vae_name=ckpt, weight_dtype="default")
    audio_vae, = run("VideosDGXLTX2AudioVAELoader", audio_vae_name=ckpt, weight_dtype="default")
    conditioning, = run("VideosDGXLTX2TextEncode", text_encoder=encoder, prompt="rain", negative_prompt="",
                        release_gemma=True)
    monkeypatch.setattr("videosdgx.runtime.memory.memory_status",
                        lambda device: MemoryStatus(device, None, None, 1024, GB, unified=False))
    with pytest.raises(InsufficientMemoryError, match=r"LTX-2 sampling of 128x64, 9 frames needs"):
        run("VideosDGXLTX2Sampler", model=model, conditioning=conditioning, vae=vae, audio_vae=audio_vae,
            upsampler=None, image=None, two_stage=False, width=128, height=64, length=9, fps=24, seed=0, steps=1,
            cfg=1.0, audio_cfg=1.0, stg=0.0, modality=1.0, rescale=0.0)


@pytest.mark.parametrize("bundle", sorted(set(DEMO_BUNDLES) | set(ltx25.DEMO_BUNDLES)))
def test_every_demo_bundle_is_planned_from_its_files(bundle, tmp_path):
    family("ltx2").hook("demo")(bundle, tmp_path)
    files = find_bundle_files(bundle, model_folders(models_dir=tmp_path))
    plan = plan_run(bundle, Size(128, 64, 9), LoadRequest(), False, files, status(119))
    assert plan.phases[0].name == "text encoding" and plan.phases[-1].name == "decoding"
    assert 0 < plan.phases[0].weights < 0.2 * GB  # tiny files, every model counted from its header
    assert all(0 < p.activations < 0.2 * GB for p in plan.phases)  # widths read from the files, not the release's
