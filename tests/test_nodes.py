"""The Wan nodes inside the ComfyUI stand-in: schemas, model lists, the node chain on tiny files, progress,
Cancel, and the engine's errors surfacing unchanged."""

from __future__ import annotations

import pytest
import torch

from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.testing.wan import write_wan_models

WAN_TYPES = {"VDGX_WAN_MODEL", "VDGX_WAN_TEXT_ENCODER", "VDGX_WAN_VAE", "VDGX_WAN_CLIP_VISION", "VDGX_WAN_CONDITIONING"}
CORE_TYPES = {"INT", "FLOAT", "STRING", "COMBO", "IMAGE", "LATENT", "BOOLEAN", "AUDIO", "VIDEO"}
LTX2_TYPES = {"VDGX_LTX2_MODEL", "VDGX_LTX2_TEXT_ENCODER", "VDGX_LTX2_CONDITIONING", "VDGX_LTX2_VAE",
              "VDGX_LTX2_AUDIO_VAE", "VDGX_LTX2_UPSAMPLER", "VDGX_LTX2_LATENT", "VDGX_LTX25_VIDEO_DECODER",
              "VDGX_LTX25_DURATION_HEAD"}


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    """ComfyUI rooted in a temporary folder holding tiny Wan2.1 T2V-1.3B, Wan2.2 T2V-A14B and TI2V-5B files."""
    base = tmp_path_factory.mktemp("comfyui")
    for variant in ("wan2.1-t2v-1.3b", "wan2.1-i2v-14b-480p", "wan2.2-t2v-a14b", "wan2.2-ti2v-5b"):
        write_wan_models(variant, base / "models")
    comfy_pack.folder_paths.set_base(base)
    return comfy_pack


@pytest.fixture()
def fresh_progress(comfy):
    comfy.utils.updates.clear()
    comfy.model_management.interrupt_current_processing(False)
    yield comfy.utils.updates
    comfy.model_management.interrupt_current_processing(False)


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


def load_t2v_13b(comfy):
    model, = run(comfy, "VideosDGXWanModelLoader", model_name="wan2.1_t2v_1.3B_fp16.safetensors",
                 low_noise_model="none", weight_dtype="default", weight_format="default")
    text_encoder, = run(comfy, "VideosDGXWanTextEncoderLoader",
                        text_encoder_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    vae, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan_2.1_vae.safetensors")
    return model, text_encoder, vae


def test_widget_ranges_and_seed_controls(comfy):
    seeds = 0
    for node in (n for node_id, n in comfy.nodes.items() if node_id.startswith(("VideosDGXWan", "VideosDGXLTX2"))):
        info = node.GET_SCHEMA().get_v1_info(node)
        for group in ("required", "optional"):
            for name, (kind, options) in info["input"].get(group, {}).items():
                if kind in ("INT", "FLOAT"):
                    assert options["min"] <= options["default"] <= options["max"], (info["name"], name)
                    assert options.get("step", 1) > 0, (info["name"], name)
                if name == "seed":
                    seeds += 1
                    assert kind == "INT" and options["control_after_generate"] is True
                    assert options["max"] == 2**64 - 1
                assert kind in CORE_TYPES | WAN_TYPES | LTX2_TYPES, (info["name"], name, kind)
        assert set(info["output"]) <= CORE_TYPES | WAN_TYPES | LTX2_TYPES
        family = {"VideosDGX/Wan": ("Wan ",), "VideosDGX/LTX-2": ("LTX-2 ", "LTX-2.5 ")}[info["category"]]
        # unmistakable in the node search: core has its own "Wan Image to Video", "Wan VAE Decode" ...
        assert info["display_name"].startswith(family) and info["display_name"].endswith(" (VideosDGX)")
    assert seeds == 3  # WanSampler, LTX2Sampler, LTX25Decode (the LTX-2 nodes are checked here too)


def test_loaders_list_the_model_folders(comfy, tmp_path):
    comfy.folder_paths.add_model_folder_path("diffusion_models", str(tmp_path / "extra"))
    (tmp_path / "extra" / "sub").mkdir(parents=True)
    (tmp_path / "extra" / "sub" / "my_wan.safetensors").write_bytes(b"")
    (tmp_path / "extra" / "readme.txt").write_text("not a model")
    info = comfy.nodes["VideosDGXWanModelLoader"].GET_SCHEMA().get_v1_info(None)["input"]["required"]
    comfy.folder_paths.folder_names_and_paths["diffusion_models"][0].remove(str(tmp_path / "extra"))
    assert info["model_name"][1]["options"] == [
        "sub/my_wan.safetensors", "wan2.1_i2v_480p_14B_fp16.safetensors", "wan2.1_t2v_1.3B_fp16.safetensors",
        "wan2.2_t2v_high_noise_14B_fp16.safetensors",
        "wan2.2_t2v_low_noise_14B_fp16.safetensors", "wan2.2_ti2v_5B_fp16.safetensors"]
    assert info["low_noise_model"][1]["options"][0] == "none" and info["low_noise_model"][1]["default"] == "none"
    lists = {node_id: comfy.nodes[node_id].GET_SCHEMA().inputs[0].options for node_id in (
        "VideosDGXWanTextEncoderLoader", "VideosDGXWanVAELoader", "VideosDGXWanCLIPVisionLoader")}
    assert lists == {"VideosDGXWanTextEncoderLoader": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
                     "VideosDGXWanVAELoader": ["wan2.2_vae.safetensors", "wan_2.1_vae.safetensors"],
                     "VideosDGXWanCLIPVisionLoader": ["clip_vision_h.safetensors"]}


def test_missing_file_names_the_bundle_to_install(comfy):
    with pytest.raises(FileNotFoundError) as known:
        run(comfy, "VideosDGXWanModelLoader", model_name="wan2.1_t2v_14B_fp16.safetensors", low_noise_model="none",
            weight_dtype="default", weight_format="default")
    message = str(known.value)
    assert "Model in folder 'diffusion_models' with filename 'wan2.1_t2v_14B_fp16.safetensors' not found." in message
    assert "`python install.py --models wan2.1-t2v-14b`" in message
    with pytest.raises(FileNotFoundError, match=r"Put the file in ComfyUI's models/vae folder"):
        run(comfy, "VideosDGXWanVAELoader", vae_name="someone_elses_vae.safetensors")


def test_vae_in_the_model_loader_gives_the_engine_error(comfy, tmp_path):
    comfy.folder_paths.add_model_folder_path("diffusion_models", comfy.folder_paths.get_folder_paths("vae")[0])
    try:
        with pytest.raises(WrongComponentError) as error:
            run(comfy, "VideosDGXWanModelLoader", model_name="wan_2.1_vae.safetensors", low_noise_model="none",
                weight_dtype="default", weight_format="default")
    finally:
        comfy.folder_paths.folder_names_and_paths["diffusion_models"][0].pop()
    assert str(error.value).startswith("wan_2.1_vae.safetensors is a Wan 2.1 VAE (Wan), not a Wan transformer; "
                                       "load it with the Wan VAE Loader (VideosDGXWanVAELoader).")


def test_wan_chain_makes_frames_with_progress(comfy, fresh_progress):
    model, text_encoder, vae = load_t2v_13b(comfy)
    assert fresh_progress[-1][1] == fresh_progress[-1][2] > 1000  # byte progress of the last file, complete
    assert len(model.models) == 1 and model.boundary is None
    conditioning, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt="a red fox",
                        negative_prompt="")
    assert conditioning.image is None and conditioning.text.positive.shape[1] == 64
    latent, = run(comfy, "VideosDGXWanEmptyLatent", width=30, height=18, length=6, latent_channels="48", vae=vae)
    assert latent["samples"].shape == (1, 16, 2, 2, 4)  # rounded to 32x16, 5 frames; the VAE wins over "48"
    fresh_progress.clear()
    sampled, = run(comfy, "VideosDGXWanSampler", model=model, conditioning=conditioning, latent=latent, seed=7,
                   steps=3, cfg=5.0, cfg_low_noise=3.0, shift=5.0, sampler="euler", denoise=1.0)
    assert fresh_progress == [(None, 1, 3), (None, 2, 3), (None, 3, 3)]
    assert sampled["samples"].shape == (1, 16, 2, 2, 4) and torch.isfinite(sampled["samples"]).all()
    images, = run(comfy, "VideosDGXWanVAEDecode", latent=sampled, vae=vae)
    assert images.shape == (5, 16, 32, 3) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0
    encoded, = run(comfy, "VideosDGXWanVAEEncode", images=images, vae=vae)
    assert encoded["samples"].shape == (1, 16, 2, 2, 4)


def test_same_seed_same_video_other_seed_other_video(comfy):
    model, text_encoder, vae = load_t2v_13b(comfy)
    conditioning, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt="a cat", negative_prompt="")
    latent, = run(comfy, "VideosDGXWanEmptyLatent", width=16, height=16, length=1, latent_channels="16")
    settings = dict(model=model, conditioning=conditioning, latent=latent, steps=2, cfg=4.0, cfg_low_noise=3.0,
                    shift=5.0, sampler="unipc", denoise=1.0)
    first, again, other = (run(comfy, "VideosDGXWanSampler", seed=s, **settings)[0]["samples"] for s in (1, 1, 2))
    assert torch.equal(first, again) and not torch.allclose(first, other)


def test_cancel_mid_sampling_raises_comfyui_interrupt(comfy, fresh_progress):
    model, text_encoder, vae = load_t2v_13b(comfy)
    conditioning, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt="a cat", negative_prompt="")
    latent, = run(comfy, "VideosDGXWanEmptyLatent", width=16, height=16, length=1, latent_channels="16")
    calls = []

    def press_cancel(*_):
        calls.append(1)
        comfy.model_management.interrupt_current_processing(True)

    hook = model.models[0].register_forward_hook(press_cancel)
    fresh_progress.clear()
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run(comfy, "VideosDGXWanSampler", model=model, conditioning=conditioning, latent=latent, seed=0,
                steps=6, cfg=5.0, cfg_low_noise=3.0, shift=5.0, sampler="unipc", denoise=1.0)
    finally:
        hook.remove()
    assert fresh_progress == [] and 1 <= len(calls) <= 2  # stopped after the first step's model call(s)
    assert comfy.model_management.interrupt_requested is False


def test_two_experts_switch_at_the_official_boundary(comfy, fresh_progress):
    model, = run(comfy, "VideosDGXWanModelLoader", model_name="wan2.2_t2v_high_noise_14B_fp16.safetensors",
                 low_noise_model="wan2.2_t2v_low_noise_14B_fp16.safetensors", weight_dtype="fp32",
                 weight_format="default")
    assert len(model.models) == 2 and model.boundary == 0.875
    assert model.names == ("wan2.2_t2v_high_noise_14B_fp16.safetensors", "wan2.2_t2v_low_noise_14B_fp16.safetensors")
    assert model.models[0].patch_embedding.weight.dtype == torch.float32
    with pytest.raises(ConfigurationError, match="Only Wan2.2 A14B"):
        run(comfy, "VideosDGXWanModelLoader", model_name="wan2.2_ti2v_5B_fp16.safetensors",
            low_noise_model="wan2.2_ti2v_5B_fp16.safetensors", weight_dtype="default", weight_format="default")


def test_empty_latent_shapes_follow_the_vae(comfy):
    for channels, size, shape in (("16", (832, 480, 81), (1, 16, 21, 60, 104)),
                                  ("48", (1280, 704, 121), (1, 48, 31, 44, 80))):
        latent, = run(comfy, "VideosDGXWanEmptyLatent", width=size[0], height=size[1], length=size[2],
                      latent_channels=channels)
        assert latent["samples"].shape == shape and latent["samples"].abs().sum() == 0
    with pytest.raises(ConfigurationError, match="too small"):
        run(comfy, "VideosDGXWanEmptyLatent", width=8, height=480, length=81, latent_channels="16")


def test_rounded_sizes_are_shown_on_the_node(comfy):
    node = comfy.nodes["VideosDGXWanEmptyLatent"]
    exact = node.execute(width=832, height=480, length=81, latent_channels="16")
    assert exact.ui is None
    rounded = node.execute(width=840, height=480, length=80, latent_channels="48")
    assert rounded.args[0]["samples"].shape == (1, 48, 21, 30, 52)
    assert rounded.ui.as_dict() == {"text": ("size 840x480 is not a multiple of 32; using 832x480\n"
                                             "80 frames is not 4n+1; using 81 frames",)}


@pytest.mark.parametrize("node_id, inputs, message", [
    ("VideosDGXWanSampler", {"sampler": "dpm++"}, "sampler 'dpm++' is not one of: unipc, euler"),
    ("VideosDGXWanModelLoader", {"model_name": "wan2.1_t2v_1.3B_fp16.safetensors", "low_noise_model": "none",
                                 "weight_dtype": "int8"}, "weight_dtype 'int8' is not one of"),
    ("VideosDGXWanModelLoader", {"model_name": "wan2.1_t2v_1.3B_fp16.safetensors", "low_noise_model": "none",
                                 "weight_format": "fp4"}, "weight_format 'fp4' is not one of: default, fp8_e4m3fn"),
    ("VideosDGXWanModelLoader", {"model_name": "wan2.2_t2v_high_noise_14B_fp16.safetensors",
                                 "low_noise_model": "wan2.2_t2v_high_noise_14B_fp16.safetensors"},
     "low_noise_model is the same file as model_name"),
])
def test_combo_values_are_validated_before_the_run(comfy, node_id, inputs, message):
    answer = comfy.nodes[node_id].validate_inputs(**inputs)
    assert isinstance(answer, str) and message in answer


def test_experts_of_different_models_are_refused_at_load(comfy):
    with pytest.raises(ConfigurationError, match="are not the two experts of one Wan2.2 A14B model"):
        run(comfy, "VideosDGXWanModelLoader", model_name="wan2.2_t2v_high_noise_14B_fp16.safetensors",
            low_noise_model="wan2.2_ti2v_5B_fp16.safetensors", weight_dtype="default", weight_format="default")


def test_ti2v_image_to_video_and_wrong_latent(comfy):
    model, = run(comfy, "VideosDGXWanModelLoader", model_name="wan2.2_ti2v_5B_fp16.safetensors",
                 low_noise_model="none", weight_dtype="default", weight_format="default")
    vae, = run(comfy, "VideosDGXWanVAELoader", vae_name="wan2.2_vae.safetensors")
    text_encoder, = run(comfy, "VideosDGXWanTextEncoderLoader",
                        text_encoder_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    conditioning, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt="waves", negative_prompt="")
    image = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    with_image, latent = run(comfy, "VideosDGXWanImageToVideo", conditioning=conditioning, vae=vae, start_image=image,
                             width=32, height=32, length=5)
    assert latent["samples"].shape == (1, 48, 2, 2, 2)
    assert with_image.text is conditioning.text and with_image.image.first_frame.shape == (1, 48, 1, 2, 2)
    assert with_image.image.frame_mask[0, 0, :, 0, 0].tolist() == [0.0, 1.0]
    with pytest.raises(ConfigurationError, match="takes only a start image"):
        run(comfy, "VideosDGXWanImageToVideo", conditioning=conditioning, vae=vae, start_image=image, width=32,
            height=32, length=5, end_image=image)
    wrong, = run(comfy, "VideosDGXWanEmptyLatent", width=32, height=32, length=5, latent_channels="16")
    with pytest.raises(ConfigurationError, match=r"got \[16, 2, 4, 4\]\. Make the latent with the matching VAE"):
        run(comfy, "VideosDGXWanSampler", model=model, conditioning=with_image, latent=wrong, seed=0, steps=1,
            cfg=5.0, cfg_low_noise=3.0, shift=5.0, sampler="unipc", denoise=1.0)


def test_wiring_mistakes_are_named_in_node_terms(comfy):
    i2v, = run(comfy, "VideosDGXWanModelLoader", model_name="wan2.1_i2v_480p_14B_fp16.safetensors",
               low_noise_model="none", weight_dtype="default", weight_format="default")
    t2v, text_encoder, vae = load_t2v_13b(comfy)
    text, = run(comfy, "VideosDGXWanTextEncode", text_encoder=text_encoder, prompt="a boat", negative_prompt="")
    image = torch.rand(1, 24, 24, 3, generator=torch.Generator().manual_seed(1))
    without_clip, latent = run(comfy, "VideosDGXWanImageToVideo", conditioning=text, vae=vae, start_image=image,
                               width=16, height=16, length=5)
    assert without_clip.image.y.shape == (1, 20, 2, 2, 2)
    settings = dict(latent=latent, seed=0, steps=1, cfg=5.0, cfg_low_noise=3.0, shift=3.0, sampler="unipc",
                    denoise=1.0)
    for model, conditioning, message in (
        (i2v, text, r"is an image-to-video Wan model: give it image conditioning \(Wan Image to Video"),
        (i2v, without_clip, r"needs CLIP vision features: load clip_vision_h.safetensors with the Wan CLIP Vision"),
        (t2v, without_clip, "is a text-to-video Wan model: it takes no image conditioning"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            run(comfy, "VideosDGXWanSampler", model=model, conditioning=conditioning, **settings)
    clip, = run(comfy, "VideosDGXWanCLIPVisionLoader", clip_name="clip_vision_h.safetensors")
    with_clip, latent = run(comfy, "VideosDGXWanImageToVideo", conditioning=text, vae=vae, start_image=image,
                            width=16, height=16, length=5, clip_vision=clip)
    assert with_clip.image.clip_fea.shape[-1] == 160
    sampled, = run(comfy, "VideosDGXWanSampler", model=i2v, conditioning=with_clip, **settings)
    assert sampled["samples"].shape == (1, 16, 2, 2, 2)


def test_loaders_validate_file_names_before_the_run(comfy):
    """ComfyUI does not check V3 combo values, so a wrong file name must fail validation (HTTP 400), not the run."""
    nodes = comfy.nodes
    assert nodes["VideosDGXWanModelLoader"].validate_inputs(
        model_name="wan2.2_t2v_high_noise_14B_fp16.safetensors",
        low_noise_model="wan2.2_t2v_low_noise_14B_fp16.safetensors") is True
    assert nodes["VideosDGXWanVAELoader"].validate_inputs(vae_name="wan_2.1_vae.safetensors") is True
    message = nodes["VideosDGXWanModelLoader"].validate_inputs(
        model_name="wan2.1_t2v_1.3B_fp16.safetensors", low_noise_model="wan2.2_i2v_low_noise_14B_fp16.safetensors")
    assert "'wan2.2_i2v_low_noise_14B_fp16.safetensors' is not in diffusion_models" in message
    assert "install.py --models wan2.2-i2v-a14b" in message
    message = nodes["VideosDGXWanCLIPVisionLoader"].validate_inputs(clip_name="nope.safetensors")
    assert "'nope.safetensors' is not in clip_vision" in message and "models/clip_vision" in message


def test_a_failing_live_preview_never_ends_the_run(comfy, monkeypatch, caplog):
    """Latents that do not fit a format's preview factors (tiny demo models) stop previews, not the sampling."""
    import logging
    import sys
    import types

    calls = []

    class Previewer:
        def decode_latent_to_preview_image(self, kind, latents):
            calls.append(latents.shape)
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    formats = types.SimpleNamespace(LTXV=lambda: "ltxv")
    monkeypatch.setitem(sys.modules, "comfy.latent_formats", formats)
    monkeypatch.setitem(sys.modules, "latent_preview", types.SimpleNamespace(get_previewer=lambda *a: Previewer()))
    from importlib import import_module

    preview = import_module(comfy.pack.__name__ + ".nodes._comfy").latent_previewer("LTXV")
    with caplog.at_level(logging.WARNING):
        assert preview(torch.zeros(1, 8, 2, 4, 4)) is None and preview(torch.zeros(1, 8, 2, 4, 4)) is None
    assert len(calls) == 1 and "live previews stopped" in caplog.text
