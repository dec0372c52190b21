"""The SkyReels V3 nodes inside the ComfyUI stand-in, composed with the Wan text encoder, VAE and decode nodes."""

from __future__ import annotations

import pytest
import torch

from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.testing.skyreels_v3 import write_skyreels_bundle

CORE_TYPES = {"INT", "FLOAT", "STRING", "COMBO", "IMAGE", "LATENT", "AUDIO"}
WAN_TYPES = {"VDGX_WAN_MODEL", "VDGX_WAN_CONDITIONING", "VDGX_WAN_VAE", "VDGX_WAN_CLIP_VISION",
             "VDGX_SKYREELS_AUDIO_ENCODER"}


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    for bundle in ("skyreels-v3-r2v-14b", "skyreels-v3-v2v-14b"):
        write_skyreels_bundle(bundle, base / "models")
    comfy_pack.folder_paths.set_base(base)
    return comfy_pack


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


def common(comfy, model_name: str, task: str, prompt: str):
    model, = run(comfy, "VideosDGXSkyReelsModelLoader", model_name=model_name, task=task, weight_dtype="default",
                 weight_format="default")
    text_encoder, = run(comfy, "VideosDGXWanTextEncoderLoader",
                        text_encoder_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    vae, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")
    conditioning, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt=prompt, negative_prompt="")
    return model, conditioning, vae


def test_schemas(comfy):
    ids = [n for n in comfy.nodes if n.startswith("VideosDGXSkyReels")]
    assert ids == ["VideosDGXSkyReelsModelLoader", "VideosDGXSkyReelsReferenceToVideo", "VideosDGXSkyReelsExtendVideo",
                   "VideosDGXSkyReelsAudioEncoderLoader", "VideosDGXSkyReelsTalkingAvatar"]
    for node_id in ids:
        info = comfy.nodes[node_id].GET_SCHEMA().get_v1_info(comfy.nodes[node_id])
        assert info["category"] == "VideosDGX/SkyReels V3" and info["display_name"].startswith("SkyReels V3 ")
        assert info["display_name"].endswith(" (VideosDGX)")
        for group in ("required", "optional"):
            for name, (kind, options) in info["input"].get(group, {}).items():
                assert kind in CORE_TYPES | WAN_TYPES, (node_id, name)
                if kind in ("INT", "FLOAT"):
                    assert options["min"] <= options["default"] <= options["max"], (node_id, name)
    optional = comfy.nodes["VideosDGXSkyReelsReferenceToVideo"].GET_SCHEMA().get_v1_info(None)["input"]["optional"]
    assert set(optional) == {"reference_2", "reference_3", "reference_4"}


def test_reference_to_video_chain(comfy):
    model, conditioning, vae = common(comfy, "skyreels_v3_r2v_14B.safetensors", "r2v", "two friends")
    latent, = run(comfy, "VideosDGXSkyReelsReferenceToVideo", model=model, conditioning=conditioning, vae=vae,
                  reference_1=torch.rand(1, 24, 32, 3), reference_2=torch.rand(1, 32, 24, 3), resolution="480P",
                  width=48, height=32, length=5, seed=1, steps=1, cfg=1.0, cfg_image=1.0, shift=5.0,
                  sampler="unipc")
    images, = run(comfy, "VideosDGXWanVAEDecode", latent=latent, vae=vae)
    assert latent["samples"].shape == (1, 16, 2, 4, 6) and images.shape == (5, 32, 48, 3)


def test_extend_video_chain_and_bad_input(comfy):
    model, conditioning, vae = common(comfy, "skyreels_v3_v2v_14B", "v2v", "the cat walks on")
    video = torch.rand(25, 16, 32, 3)
    with pytest.raises(ConfigurationError, match="shot needs at least 33"):
        run(comfy, "VideosDGXSkyReelsExtendVideo", model=model, conditioning=conditioning, vae=vae, video=video,
            mode="shot", duration=5, resolution="480P", width=0, height=0, seed=0, steps=1, cfg=1.0, shift=8.0,
            sampler="unipc")
    images, = run(comfy, "VideosDGXSkyReelsExtendVideo", model=model, conditioning=conditioning, vae=vae,
                  video=video, mode="extend", duration=1, resolution="480P", width=32, height=32, seed=0, steps=1,
                  cfg=1.0, shift=8.0, sampler="unipc")
    assert images.shape == (36, 32, 32, 3)  # 9 new latent frames after the 7 of the prefix
    with pytest.raises(WrongComponentError, match="diffusers key layout of SkyReels V3 R2V-14B"):
        run(comfy, "VideosDGXSkyReelsModelLoader", model_name="skyreels_v3_r2v_14B.safetensors", task="v2v",
            weight_dtype="default", weight_format="default")


@pytest.mark.parametrize("node_id, inputs, message", [
    ("VideosDGXSkyReelsModelLoader", {"model_name": "x.safetensors", "task": "t2v"}, "task 't2v' is not one of"),
    ("VideosDGXSkyReelsModelLoader", {"model_name": "x.safetensors", "weight_format": "int4"}, "weight_format 'int4'"),
    ("VideosDGXSkyReelsReferenceToVideo", {"resolution": "1080P"}, "resolution '1080P' is not one of"),
    ("VideosDGXSkyReelsReferenceToVideo", {"sampler": "ddim"}, "sampler 'ddim' is not one of"),
    ("VideosDGXSkyReelsExtendVideo", {"mode": "loop"}, "mode 'loop' is not one of: extend, shot"),
    ("VideosDGXSkyReelsTalkingAvatar", {"resolution": "540P"}, "resolution '540P' is not one of"),
])
def test_combo_values_are_validated_before_the_run(comfy, node_id, inputs, message):
    answer = comfy.nodes[node_id].validate_inputs(**inputs)
    assert isinstance(answer, str) and message in answer


def test_samplers_check_their_peak_before_sampling(comfy, monkeypatch):
    from videosdgx.runtime.errors import InsufficientMemoryError
    from videosdgx.runtime.memory import GB, MemoryStatus

    r2v = common(comfy, "skyreels_v3_r2v_14B.safetensors", "r2v", "two friends")
    v2v = common(comfy, "skyreels_v3_v2v_14B", "v2v", "the cat walks on")
    monkeypatch.setattr("videosdgx.runtime.memory.memory_status",
                        lambda device: MemoryStatus(device, None, None, 1024, GB, unified=False))
    with pytest.raises(InsufficientMemoryError, match=r"SkyReels V3 r2v sampling at 48x32, 5 frames needs"):
        run(comfy, "VideosDGXSkyReelsReferenceToVideo", model=r2v[0], conditioning=r2v[1], vae=r2v[2],
            reference_1=torch.rand(1, 24, 32, 3), resolution="480P", width=48, height=32, length=5, seed=1, steps=1,
            cfg=1.0, cfg_image=1.0, shift=5.0, sampler="unipc")
    with pytest.raises(InsufficientMemoryError, match=r"SkyReels V3 v2v sampling at 32x32, 24 frames needs"):
        run(comfy, "VideosDGXSkyReelsExtendVideo", model=v2v[0], conditioning=v2v[1], vae=v2v[2],
            video=torch.rand(25, 16, 32, 3), mode="extend", duration=1, resolution="480P", width=32, height=32, seed=0,
            steps=1, cfg=1.0, shift=8.0, sampler="unipc")


def test_installed_model_folders_are_offered_and_only_inside_their_model_folder(comfy):
    import sys

    helpers = sys.modules[f"{comfy.pack.__name__}.nodes._comfy"]
    assert "skyreels_v3_v2v_14B" in helpers.model_names("diffusion_models")
    assert helpers.missing_model("diffusion_models", "skyreels_v3_v2v_14B") is True
    assert helpers.model_path("diffusion_models", "skyreels_v3_v2v_14B").endswith(".safetensors.index.json")
    for escaping in ("../diffusion_models/skyreels_v3_v2v_14B", str(comfy.folder_paths.get_folder_paths(
            "diffusion_models")[0]) + "/skyreels_v3_v2v_14B"):
        assert isinstance(helpers.missing_model("diffusion_models", escaping), str)
