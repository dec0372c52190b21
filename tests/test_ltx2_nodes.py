"""The LTX-2 nodes inside the ComfyUI stand-in: loader + generate on a tiny demo bundle, IMAGE / AUDIO / VIDEO out,
progress, and the engine's errors surfacing unchanged."""

from __future__ import annotations

import pytest

from videosdgx.runtime.errors import WrongComponentError
from videosdgx.testing.ltx2 import write_ltx2_bundle

CKPT, GEMMA = "ltx-2-19b-distilled.safetensors", "gemma_3_12B_it_fp8_scaled.safetensors"
UPSAMPLER = "ltx-2-spatial-upscaler-x2-1.0.safetensors"


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    write_ltx2_bundle("ltx-2-19b-distilled", base / "models")
    write_ltx2_bundle("ltx-2.3-22b-distilled", base / "models")
    comfy_pack.folder_paths.set_base(base, folders=("checkpoints", "text_encoders", "latent_upscale_models"))
    return comfy_pack


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


def load(comfy, variant="ltx-2-19b-distilled", ckpt=CKPT, upsampler=UPSAMPLER):
    pipeline, = run(comfy, "VideosDGXLTX2Loader", variant=variant, ckpt_name=ckpt, text_encoder_name=GEMMA,
                    upsampler_name=upsampler, weight_dtype="default", weight_format="default", low_memory=False)
    return pipeline


def test_loader_and_generate_make_frames_audio_and_video(comfy, tmp_path):
    comfy.utils.updates.clear()
    pipeline = load(comfy)
    images, audio, video = run(comfy, "VideosDGXLTX2Generate", ltx2=pipeline, prompt="a drum solo", negative_prompt="",
                               width=128, height=64, length=9, fps=24, seed=3, steps=2, cfg=0.0, two_stage=True)
    assert images.shape == (9, 64, 128, 3) and audio["waveform"].shape[:2] == (1, 2)
    assert video.get_components().audio is audio and video.get_dimensions() == (128, 64)
    video.save_to(tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").stat().st_size > 0
    assert comfy.utils.updates, "no progress reported"


def test_loader_validates_names_and_refuses_the_wrong_release(comfy):
    loader = comfy.nodes["VideosDGXLTX2Loader"]
    answer = loader.validate_inputs(variant="ltx-2-19b-distilled", ckpt_name="missing.safetensors",
                                    text_encoder_name=GEMMA, upsampler_name="none")
    assert "missing.safetensors" in answer
    with pytest.raises(WrongComponentError, match="LTX-2.3 22B checkpoint, but the ltx-2-19b-distilled variant"):
        load(comfy, ckpt="ltx-2.3-22b-distilled-1.1.safetensors", upsampler="none")


@pytest.mark.parametrize("name", ["ltx-2-19b-distilled", "ltx-2-19b-distilled-i2v", "ltx-2.3-22b-distilled",
                                  "ltx-2.3-22b-distilled-i2v"])
def test_shipped_workflows_use_the_official_settings(name):
    from workflow_harness import api_workflow, workflow_variant

    variant = workflow_variant(name)
    generate, = [n["inputs"] for n in api_workflow(name).values() if n["class_type"] == "VideosDGXLTX2Generate"]
    loader, = [n["inputs"] for n in api_workflow(name).values() if n["class_type"] == "VideosDGXLTX2Loader"]
    assert (generate["width"], generate["height"], generate["length"], generate["fps"]) == (
        variant.width, variant.height, variant.frames, variant.fps)
    assert (generate["steps"], generate["cfg"], generate["two_stage"]) == (0, 0.0, variant.two_stage)
    assert loader["variant"] == variant.name and (loader["upsampler_name"] != "none") == variant.two_stage
    assert ("image" in generate) == name.endswith("-i2v")
