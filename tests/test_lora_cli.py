"""`videosdgx generate` with LoRAs: the Lightning bundles, `--lora FILE[:STRENGTH]` / `--lora-low` (a path, or a
name in the models' loras folder), and every refusal before anything is loaded."""

import logging

import pytest
import torch

from videosdgx.cli import main
from videosdgx.media import read_video
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.lora import ltx2_lora_state, write_wan_lora
from videosdgx.testing.wan import tiny_dit_config, write_wan_bundle
from videosdgx.wan.transformer import WanModel

TINY = ["--width", "32", "--height", "32", "--frames", "5"]


def tiny_lora(path, fmt="official"):
    with torch.device("meta"):
        model = WanModel(tiny_dit_config("t2v", "2.1", False))
    return write_wan_lora(path, model, fmt, std=0.02)


def test_lightning_bundle_runs_four_euler_steps_without_guidance(tmp_path, caplog):
    out = tmp_path / "l.mp4"
    with caplog.at_level(logging.INFO):
        assert main(["generate", "--demo", "--model", "wan2.2-t2v-a14b-lightning", "--prompt", "a fox", *TINY,
                     "--steps", "4", "--out", str(out)]) == 0
    assert read_video(out).frames.shape == (5, 32, 32, 3)
    text = caplog.text
    assert "sampling 4 steps (euler, shift 5.0, cfg 1.0, 2 high-noise steps)" in text
    assert "applied wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors at strength 1" in text
    assert "applied wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors at strength 1" in text


def test_lora_by_name_from_the_loras_folder_and_by_path(tmp_path, caplog):
    models = tmp_path / "models"
    write_wan_bundle("wan2.1-t2v-1.3b", models)
    tiny_lora(models / "loras" / "style.safetensors", "kohya")
    second = tiny_lora(tmp_path / "detail.safetensors", "diffusers")
    out = tmp_path / "s.mp4"
    with caplog.at_level(logging.INFO):
        assert main(["generate", "--models-dir", str(models), "--prompt", "a fox", *TINY, "--steps", "2",
                     "--lora", "style.safetensors:0.7", "--lora", str(second), "--out", str(out)]) == 0
    assert "applied style.safetensors at strength 0.7" in caplog.text
    assert "applied detail.safetensors at strength 1" in caplog.text


@pytest.mark.parametrize("extra, message", [
    (["--lora-low", "x.safetensors"], "--lora-low: Wan2.1 T2V-1.3B has one diffusion model"),
    (["--lora", "/no/such/dir/x.safetensors:0.5"], "--lora /no/such/dir/x.safetensors:0.5: no such file"),
    (["--lora", "LTX"], "ltx2_lora.safetensors is a LTX-2 (2 blocks) LoRA (rank 4), not a Wan LoRA"),
    (["--lora", "VAE"], "vae.safetensors is a Wan 2.1 VAE (Wan), not a LoRA"),
    (["--lora", "LTX:inf"], "the strength after ':' must be a finite number"),
])
def test_refusals_before_loading(tmp_path, caplog, extra, message):
    ltx = save_safetensors(tmp_path / "ltx2_lora.safetensors", ltx2_lora_state())
    vae = save_safetensors(tmp_path / "vae.safetensors", {"decoder.middle.0.residual.0.gamma": torch.ones(4, 1, 1, 1)})
    extra = [str(ltx) + value[3:] if value.startswith("LTX") else str(vae) if value == "VAE" else value
             for value in extra]
    with caplog.at_level(logging.ERROR):
        assert main(["generate", "--demo", "--prompt", "a fox", *TINY, *extra, "--out", str(tmp_path / "o.mp4")]) == 2
    assert message in caplog.text


def test_missing_name_and_server_refusal(tmp_path, caplog):
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    with caplog.at_level(logging.ERROR):
        assert main(["generate", "--models-dir", str(models), "--prompt", "a fox", "--lora", "gone.safetensors",
                     "--out", str(tmp_path / "o.mp4")]) == 2
    assert f"--lora gone.safetensors: no such file here or in the loras folder(s) {models / 'loras'}" in caplog.text
    with caplog.at_level(logging.ERROR):
        assert main(["generate", "--prompt", "a fox", "--lora", "style.safetensors", "--server",
                     "http://127.0.0.1:9", "--out", str(tmp_path)]) == 2
    assert "--lora only apply in-process" in caplog.text
