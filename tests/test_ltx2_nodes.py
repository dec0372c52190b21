"""The LTX-2 nodes inside the ComfyUI stand-in, on tiny demo bundles: the separate loaders, prompt encoding (with
Gemma released), sampling (distilled, dev two-stage with the distilled LoRA, image-to-video), decoding to IMAGE +
AUDIO that core Create Video / Save Video turn into an MP4 with sound, and the loaders' validation messages."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from videosdgx.media import read_video
from videosdgx.media.still import recompress_image
from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.testing.ltx2 import write_ltx2_bundle

CKPT, GEMMA = "ltx-2-19b-distilled.safetensors", "gemma_3_12B_it_fp8_scaled.safetensors"
DEV, LORA = "ltx-2-19b-dev-fp8.safetensors", "ltx-2-19b-distilled-lora-384.safetensors"
UPSAMPLER = "ltx-2-spatial-upscaler-x2-1.0.safetensors"
FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "latent_upscale_models")


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    for bundle in ("ltx-2-19b-distilled", "ltx-2.3-22b-distilled", "ltx-2-19b-dev-fp8"):
        write_ltx2_bundle(bundle, base / "models")
    comfy_pack.folder_paths.set_base(base, folders=FOLDERS)
    return comfy_pack


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


def parts(comfy, variant="ltx-2-19b-distilled", ckpt=CKPT, lora="none"):
    model, = run(comfy, "VideosDGXLTX2Loader", variant=variant, ckpt_name=ckpt, distilled_lora=lora,
                 weight_dtype="default", weight_format="default")
    encoder, = run(comfy, "VideosDGXLTX2TextEncoderLoader", text_encoder_name=GEMMA, ckpt_name=ckpt,
                   weight_dtype="default")
    vae, = run(comfy, "VideosDGXLTX2VAELoader", vae_name=ckpt, weight_dtype="default")
    audio_vae, = run(comfy, "VideosDGXLTX2AudioVAELoader", audio_vae_name=ckpt, weight_dtype="default")
    upsampler, = run(comfy, "VideosDGXLTX2UpsamplerLoader", upsampler_name=UPSAMPLER, weight_dtype="default")
    return model, encoder, vae, audio_vae, upsampler


def sample(comfy, model, conditioning, vae, audio_vae, upsampler=None, image=None, two_stage=True, **settings):
    size = dict(width=128, height=64, length=9, fps=24, seed=3, steps=2, cfg=3.0, audio_cfg=7.0, stg=0.0,
                modality=3.0, rescale=0.7) | settings
    latent, = run(comfy, "VideosDGXLTX2Sampler", model=model, conditioning=conditioning, vae=vae,
                  audio_vae=audio_vae, upsampler=upsampler, image=image, two_stage=two_stage, **size)
    return latent


def test_node_chain_makes_an_mp4_with_sound(comfy, tmp_path):
    import core_nodes

    comfy.utils.updates.clear()
    model, encoder, vae, audio_vae, upsampler = parts(comfy)
    conditioning, = run(comfy, "VideosDGXLTX2TextEncode", text_encoder=encoder, prompt="a drum solo",
                        negative_prompt="", release_gemma=True)
    assert encoder.released
    latent = sample(comfy, model, conditioning, vae, audio_vae, upsampler)
    assert latent.video.shape[-2:] == (64 // 16, 128 // 16)  # two stages: the second at the full size
    images, audio, fps = run(comfy, "VideosDGXLTX2Decode", latent=latent, vae=vae, audio_vae=audio_vae)
    assert images.shape == (9, 64, 128, 3) and audio["waveform"].shape[:2] == (1, 2) and fps == 24.0
    assert audio["sample_rate"] == 24000
    video, = core_nodes.CreateVideo.execute(images=images, fps=24.0, audio=audio).args
    video.save_to(tmp_path / "out.mp4")
    clip = read_video(tmp_path / "out.mp4")
    assert clip.frames.shape == (9, 64, 128, 3) and clip.fps == Fraction(24)
    assert clip.audio is not None and clip.audio["waveform"].shape[1] == 2
    assert comfy.utils.updates, "no progress reported"


def test_dev_two_stage_applies_the_distilled_lora_only_for_the_refining_steps(comfy):
    from dataclasses import replace

    model, encoder, vae, audio_vae, upsampler = parts(comfy, "ltx-2-19b-dev", DEV, LORA)
    assert model.stage2_lora is not None
    model.variant = replace(model.variant, stg_block=1)  # the tiny DiT has 2 blocks
    conditioning, = run(comfy, "VideosDGXLTX2TextEncode", text_encoder=encoder, prompt="rain on a tin roof",
                        negative_prompt="", release_gemma=False)
    probe = model.dit.transformer_blocks[0].attn1.to_q
    patched, forward = [], model.dit.forward
    model.dit.forward = lambda video, audio, perturbation=None: (
        patched.append((video.tokens.shape[0], hasattr(probe, "lora_patch"))) or forward(video, audio, perturbation))
    try:
        latent = sample(comfy, model, conditioning, vae, audio_vae, upsampler, stg=1.0)
    finally:
        del model.dit.forward
    assert patched == [(4, False), (4, False), (1, True), (1, True), (1, True)]
    assert not hasattr(probe, "lora_patch") and latent.video.shape[-1] == 128 // 16
    with pytest.raises(ConfigurationError, match="distilled LoRA"):
        sample(comfy, replace(model, stage2_lora=None), conditioning, vae, audio_vae, upsampler)


def test_image_to_video_on_2_3_keeps_the_first_frame(comfy):
    ckpt = "ltx-2.3-22b-distilled-1.1.safetensors"
    model, encoder, vae, audio_vae, _ = parts(comfy, "ltx-2.3-22b-distilled", ckpt)
    conditioning, = run(comfy, "VideosDGXLTX2TextEncode", text_encoder=encoder, prompt="waves",
                        negative_prompt="", release_gemma=False)
    image = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    latent = sample(comfy, model, conditioning, vae, audio_vae, image=image, width=64, height=64)
    seen = recompress_image(image, 33)  # the image after H.264 at LTX-2.3's default image_crf
    expected = vae.encode(torch.nn.functional.interpolate(
        seen.permute(0, 3, 1, 2), size=(64, 64), mode="bicubic").clamp(0, 1).mul(2).sub(1)[:, :, None])
    assert torch.allclose(latent.video[:, :, :1], expected, atol=1e-5)
    _, audio, _ = run(comfy, "VideosDGXLTX2Decode", latent=latent, vae=vae, audio_vae=audio_vae)
    assert audio["sample_rate"] == 48000


def test_two_stage_without_upsampler_is_refused(comfy):
    model, encoder, vae, audio_vae, _ = parts(comfy)
    conditioning, = run(comfy, "VideosDGXLTX2TextEncode", text_encoder=encoder, prompt="x", negative_prompt="",
                        release_gemma=False)
    with pytest.raises(ConfigurationError, match="needs the x2 latent upsampler"):
        sample(comfy, model, conditioning, vae, audio_vae)


def test_loaders_validate_their_inputs_and_refuse_the_wrong_release(comfy):
    loader = comfy.nodes["VideosDGXLTX2Loader"]
    assert loader.validate_inputs(variant="ltx-2-19b-distilled", ckpt_name=CKPT, distilled_lora="none") is True
    assert "missing.safetensors" in loader.validate_inputs(variant="ltx-2-19b-distilled",
                                                           ckpt_name="missing.safetensors", distilled_lora="none")
    assert "distilled_lora is for dev models" in loader.validate_inputs(
        variant="ltx-2-19b-distilled", ckpt_name=CKPT, distilled_lora=LORA)
    assert "variant 'ltx-3'" in loader.validate_inputs(variant="ltx-3", ckpt_name=CKPT, distilled_lora="none")
    for node, inputs in (("VideosDGXLTX2TextEncoderLoader", dict(text_encoder_name="nope.safetensors", ckpt_name=CKPT)),
                         ("VideosDGXLTX2VAELoader", dict(vae_name="nope.safetensors")),
                         ("VideosDGXLTX2AudioVAELoader", dict(audio_vae_name="nope.safetensors")),
                         ("VideosDGXLTX2UpsamplerLoader", dict(upsampler_name="nope.safetensors"))):
        assert "nope.safetensors" in comfy.nodes[node].validate_inputs(**inputs), node
    assert "weight_dtype 'fp64'" in comfy.nodes["VideosDGXLTX2VAELoader"].validate_inputs(
        vae_name=CKPT, weight_dtype="fp64")
    with pytest.raises(WrongComponentError, match="LTX-2.3 22B checkpoint, but the ltx-2-19b-distilled variant"):
        run(comfy, "VideosDGXLTX2Loader", variant="ltx-2-19b-distilled", ckpt_name="ltx-2.3-22b-distilled-1.1.safetensors",
            distilled_lora="none", weight_dtype="default", weight_format="default")


def test_a_model_file_is_refused_as_the_distilled_lora(comfy, tmp_path):
    loras = Path(comfy.folder_paths.get_folder_paths("loras")[0])
    (loras / "not_a_lora.safetensors").write_bytes((Path(comfy.folder_paths.models_dir) / "latent_upscale_models" /
                                                   UPSAMPLER).read_bytes())
    with pytest.raises(WrongComponentError, match="not a LoRA"):
        run(comfy, "VideosDGXLTX2Loader", variant="ltx-2-19b-dev", ckpt_name=DEV, distilled_lora="not_a_lora.safetensors",
            weight_dtype="default", weight_format="default")


@pytest.mark.parametrize("name", ["ltx-2-19b-distilled", "ltx-2-19b-distilled-i2v", "ltx-2-19b-dev",
                                  "ltx-2.3-22b-distilled", "ltx-2.3-22b-distilled-i2v"])
def test_shipped_workflows_use_the_official_settings(name):
    from workflow_harness import api_workflow, workflow_variant

    variant, workflow = workflow_variant(name), api_workflow(name)
    nodes = {node["class_type"]: node["inputs"] for node in workflow.values()}
    sampler, loader = nodes["VideosDGXLTX2Sampler"], nodes["VideosDGXLTX2Loader"]
    assert (sampler["width"], sampler["height"], sampler["length"], sampler["fps"]) == (
        variant.width, variant.height, variant.frames, variant.fps)
    assert nodes["CreateVideo"]["fps"] == variant.fps and sampler["steps"] == 0
    assert (sampler["cfg"], sampler["audio_cfg"], sampler["stg"], sampler["modality"], sampler["rescale"]) == (
        3.0, 7.0, 1.0, 3.0, 0.7)  # the dev defaults (ltx-pipelines constants); distilled models ignore them
    assert sampler["two_stage"] == variant.two_stage and ("upsampler" in sampler) == variant.two_stage
    assert loader["variant"] == variant.name and (loader["distilled_lora"] != "none") == (
        variant.two_stage and not variant.distilled)
    assert ("image" in sampler) == name.endswith("-i2v")
    decode = nodes["VideosDGXLTX2Decode"]
    assert nodes["CreateVideo"]["images"] == [decode_id(workflow), 0] and nodes["CreateVideo"]["audio"] == [
        decode_id(workflow), 1]
    assert decode["vae"] == sampler["vae"] and decode["audio_vae"] == sampler["audio_vae"]


def decode_id(workflow: dict) -> str:
    [node_id] = [i for i, node in workflow.items() if node["class_type"] == "VideosDGXLTX2Decode"]
    return node_id


def test_ltx2_models_take_part_in_comfyui_model_management(comfy):
    """"Unload models" drops the LTX-2 DiT, VAEs and upsampler; the next sampler / decode run streams them back."""
    from videosdgx.runtime.model_files import weights_dropped

    mm = comfy.model_management
    mm.current_loaded_models.clear()
    model, encoder, vae, audio_vae, upsampler = parts(comfy)
    managed = {entry.model.module for entry in mm.current_loaded_models}
    assert {model.dit, vae, audio_vae.audio_vae, upsampler} <= managed
    conditioning, = run(comfy, "VideosDGXLTX2TextEncode", text_encoder=encoder, prompt="a drum solo",
                        negative_prompt="", release_gemma=True)
    mm.unload_all_models()  # what POST /free {"unload_models": true} runs
    assert all(weights_dropped(m) for m in (model.dit, vae, audio_vae.audio_vae, upsampler))
    latent = sample(comfy, model, conditioning, vae, audio_vae, upsampler)
    images, _, _ = run(comfy, "VideosDGXLTX2Decode", latent=latent, vae=vae, audio_vae=audio_vae)
    assert not any(weights_dropped(m) for m in (model.dit, vae, audio_vae.audio_vae, upsampler))
    assert images.shape == (9, 64, 128, 3) and torch.isfinite(images).all()
    mm.current_loaded_models.clear()
