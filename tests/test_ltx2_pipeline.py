"""LTX-2 pipeline end to end on tiny demo bundles in the official layouts: text + audio + video out of the real
loaders (19B two-stage distilled, 2.3 image-to-video), size corrections, and refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from videosdgx.bundle_files import find_bundle_files
from videosdgx.install.comfyui import ModelFolders
from videosdgx.job import VideoRequest
from videosdgx.ltx2.pipeline import LTX2Pipeline, load_ltx2_pipeline, valid_size
from videosdgx.ltx2.variants import LTX2_VARIANTS, ltx2_variant
from videosdgx.media.still import recompress_image
from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.ltx2 import write_demo_checkpoint, write_ltx2_bundle

F32 = LoadRequest(dtype=torch.float32)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory) -> dict[str, LTX2Pipeline]:
    loaded = {}
    for bundle in ("ltx-2-19b-distilled", "ltx-2.3-22b-distilled"):
        models = tmp_path_factory.mktemp(bundle)
        write_ltx2_bundle(bundle, models, seed=1)
        loaded[bundle] = load_ltx2_pipeline(ltx2_variant(bundle), find_bundle_files(bundle, ModelFolders(models)), F32)
    return loaded


def test_two_stage_distilled_text_to_video_with_audio(pipelines):
    pipe = pipelines["ltx-2-19b-distilled"]
    stages = []
    result = pipe.generate(VideoRequest(prompt="a cat on a boat", width=128, height=64, frames=9, steps=2, fps=24),
                           progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert result.frames.shape == (9, 64, 128, 3) and 0 <= result.frames.min() and result.frames.max() <= 1
    assert result.audio["sample_rate"] == 24000 and result.audio["waveform"].shape[:2] == (1, 2)
    video, audio = result.latents
    factor = pipe.video_vae.config.spatial_factor
    assert video.shape[-2:] == (64 // factor, 128 // factor)  # stage 2 ran at the full size
    sampling = [s for s in stages if s[0] == "sampling"]
    assert sampling[-1] == ("sampling", 3, 3) and ("sampling", 2, 2) in sampling  # stage 1 (2 steps), stage 2 (3)
    assert [s for s in stages if s[0] == "decoding"][-1] == ("decoding", 9, 9)
    same = pipe.generate(VideoRequest(prompt="a cat on a boat", width=128, height=64, frames=9, steps=2, fps=24))
    assert torch.equal(same.frames, result.frames)  # seeded


def test_image_to_video_keeps_the_first_latent_frame(pipelines):
    pipe = pipelines["ltx-2.3-22b-distilled"]
    image = torch.rand(1, 50, 70, 3, generator=torch.Generator().manual_seed(0))
    result = pipe.generate(VideoRequest(prompt="waves", image=image, width=64, height=64, frames=9, steps=2))
    seen = recompress_image(image, 33)  # the image after H.264 at LTX-2.3's default image_crf
    expected = pipe.video_vae.encode(torch.nn.functional.interpolate(
        seen.permute(0, 3, 1, 2), size=(64, 64), mode="bicubic").clamp(0, 1).mul(2).sub(1)[:, :, None])
    video, _ = result.latents
    assert torch.allclose(video[:, :, :1], expected, atol=1e-5)
    assert result.audio["sample_rate"] == 48000


def test_sizes_are_corrected_with_notes():
    size = valid_size(100, 70, 10)
    assert (size.width, size.height, size.frames) == (96, 64, 9)
    assert any("multiples of 32" in n for n in size.notes) and any("8k+1" in n for n in size.notes)
    with pytest.raises(ConfigurationError, match="too small for LTX-2"):
        valid_size(16, 64, 9)


def test_two_stage_without_upsampler_is_refused(pipelines):
    pipe = pipelines["ltx-2-19b-distilled"]
    bare = LTX2Pipeline(pipe.variant, pipe.dit, pipe.text_encoder, pipe.video_vae, pipe.audio_vae, pipe.vocoder)
    with pytest.raises(ConfigurationError, match="needs the x2 latent upsampler.*two_stage=false"):
        bare.generate(VideoRequest(prompt="x", width=128, height=64, frames=9, steps=1))


def test_a_2_3_checkpoint_is_refused_for_a_19b_variant(tmp_path):
    from videosdgx.ltx2.loaders import load_dit

    path = write_demo_checkpoint(tmp_path / "ltx-2.3-22b-distilled.safetensors", "2.3")
    with pytest.raises(WrongComponentError, match="LTX-2.3 22B checkpoint, but the ltx-2-19b-distilled variant"):
        load_dit(path, F32, expected_version="19B", variant="ltx-2-19b-distilled")


def test_variants_follow_the_official_defaults():
    dev, dev23 = LTX2_VARIANTS["ltx-2-19b-dev"], LTX2_VARIANTS["ltx-2.3-22b-dev"]
    assert (dev.steps, dev.stg_block, dev.video_guidance.cfg, dev.audio_guidance.cfg) == (40, 29, 3.0, 7.0)
    assert (dev23.steps, dev23.stg_block) == (30, 28)
    assert all(v.frame_step == 8 and v.size_multiple == (64 if v.two_stage else 32) for v in LTX2_VARIANTS.values())


def test_dev_variant_runs_every_guidance_pass_with_the_negative_prompt(pipelines):
    pipe = pipelines["ltx-2-19b-distilled"]
    dev = LTX2Pipeline(ltx2_variant("ltx-2-19b-dev"), pipe.dit, pipe.text_encoder, pipe.video_vae, pipe.audio_vae,
                       pipe.vocoder)
    dev.variant = replace(dev.variant, stg_block=1)  # the tiny DiT has 2 blocks
    prompts, batches = [], []
    encode, forward = pipe.text_encoder.encode, pipe.dit.forward
    pipe.text_encoder.encode = lambda texts: prompts.append(list(texts)) or encode(texts)
    pipe.dit.forward = lambda video, audio, perturbation=None: (
        batches.append((video.tokens.shape[0], perturbation.stg_blocks)) or forward(video, audio, perturbation))
    try:
        result = dev.generate(VideoRequest(prompt="rain", width=64, height=64, frames=9, steps=2,
                                           options={"two_stage": False}))
    finally:
        del pipe.text_encoder.encode, pipe.dit.forward
    assert prompts == [["rain", dev.variant.negative_prompt]]
    assert batches == [(4, (1,))] * 2  # cond, uncond, STG-perturbed and modality-isolated in one batch per step
    assert result.frames.shape == (9, 64, 64, 3)


def test_memory_plan_releases_gemma_when_memory_is_tight(tmp_path, monkeypatch, caplog):
    from videosdgx.bundle_files import BundleFiles
    from videosdgx.ltx2 import pipeline as module
    from videosdgx.runtime.memory import MemoryStatus

    files = {}
    for role, size in (("checkpoint", 6000), ("text_encoder", 3000)):
        files[role] = (tmp_path / f"{role}.safetensors",)
        files[role][0].write_bytes(b"\0" * size)
    bundle = BundleFiles("b", files)
    cpu = torch.device("cpu")
    monkeypatch.setattr(module, "memory_status", lambda device: MemoryStatus(cpu, None, None, 10_000, 10_000, False))
    with caplog.at_level("INFO"):
        assert module.memory_plan(bundle, cpu, low_memory=False) is True
    assert "Gemma is released after encoding (memory is tight)" in caplog.text
    monkeypatch.setattr(module, "memory_status", lambda device: MemoryStatus(cpu, None, None, 10**9, 10**9, False))
    assert module.memory_plan(bundle, cpu, low_memory=False) is False


def test_dev_two_stage_refines_with_the_distilled_lora_on_fp8_weights(tmp_path):
    """19B dev, fp8 checkpoint: stage 1 guided at half size, stage 2 (3 steps, no guidance) with the distilled LoRA
    applied to the quantised DiT, removed afterwards."""
    from videosdgx.runtime.quantized_linear import QuantizedLinear

    write_ltx2_bundle("ltx-2-19b-dev-fp8", tmp_path, seed=2)
    variant = ltx2_variant("ltx-2-19b-dev")
    pipe = load_ltx2_pipeline(variant, find_bundle_files("ltx-2-19b-dev-fp8", ModelFolders(tmp_path)), F32)
    pipe.variant = replace(variant, stg_block=1)  # the tiny DiT has 2 blocks
    probe = pipe.dit.transformer_blocks[0].attn1.to_q
    assert isinstance(probe, QuantizedLinear) and probe.weight.dtype == torch.float8_e4m3fn
    weight = probe.weight.clone()
    calls, forward = [], pipe.dit.forward
    pipe.dit.forward = lambda video, audio, perturbation=None: (
        calls.append((video.tokens.shape[0], video.tokens.shape[1], hasattr(probe, "lora_patch")))
        or forward(video, audio, perturbation))
    try:
        result = pipe.generate(VideoRequest(prompt="rain", width=128, height=64, frames=9, steps=2))
    finally:
        del pipe.dit.forward
    factor = pipe.video_vae.config.spatial_factor
    assert [c[2] for c in calls] == [False, False, True, True, True]
    assert [c[0] for c in calls] == [4, 4, 1, 1, 1]  # guided passes in stage 1 only
    assert calls[2][1] == 4 * calls[0][1]  # stage 2 at twice the sides
    assert not hasattr(probe, "lora_patch") and torch.equal(probe.weight, weight)
    assert result.frames.shape == (9, 64, 128, 3) and result.audio["waveform"].shape[:2] == (1, 2)


def test_dev_two_stage_without_the_distilled_lora_is_refused(pipelines):
    pipe = pipelines["ltx-2-19b-distilled"]
    dev = LTX2Pipeline(ltx2_variant("ltx-2-19b-dev"), pipe.dit, pipe.text_encoder, pipe.video_vae, pipe.audio_vae,
                       pipe.vocoder, upsampler=object())
    with pytest.raises(ConfigurationError, match="distilled LoRA.*ltx-2-19b-distilled-lora-384.*two_stage=false"):
        dev.generate(VideoRequest(prompt="x", width=128, height=64, frames=9, steps=1))
