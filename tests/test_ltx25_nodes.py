"""The LTX-2.5 nodes inside the ComfyUI stand-in, on the tiny demo bundle: the node chain (LTX-2 loaders for the
DiT and the VAEs, Gemma 4 loader, LTX-2 Text Encode, duration-head length, sampler, diffusion decode) makes what
the engine's `generate` makes for the same request (text-to-video, first frame, first and last frame), the
shipped workflows and `generate --server` choosing them, and the loaders' messages."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from videosdgx.bundle_files import find_bundle_files
from videosdgx.families import family
from videosdgx.install.comfyui import ModelFolders
from videosdgx.job import VideoRequest
from videosdgx.runtime.errors import WrongComponentError
from videosdgx.runtime.model_files import LoadRequest

BUNDLE = "ltx-2.5-22b-distilled"
DIT = "ltx-2.5-22b-distilled-transformer-bf16.safetensors"
GEMMA4 = "gemma4-12b-with-proj-ltx-2.5-bf16.safetensors"
TOKENIZER = "ltx-2.5-gemma4/tokenizer.json"
CONV_VAE, DIFFUSION_VAE = "ltx-2.5-video-vae-conv-bf16.safetensors", "ltx-2.5-video-vae-bf16.safetensors"
AUDIO_VAE, HEAD = "ltx-2.5-audio-vae-bf16.safetensors", "ltx-2.5-duration-head-bf16.safetensors"
SPATIAL, TEMPORAL = ("ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0.safetensors",
                     "ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0.safetensors")
FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "latent_upscale_models",
           "model_patches")
PROMPT = "a cat on a boat, waves and gulls"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    family("ltx2").hook("demo")(BUNDLE, base / "models")
    return base


@pytest.fixture(scope="module")
def comfy(comfy_pack, models):
    comfy_pack.folder_paths.set_base(models, folders=FOLDERS)
    return comfy_pack


@pytest.fixture(scope="module")
def engine(models):
    ltx2 = family("ltx2")
    files = find_bundle_files(BUNDLE, ModelFolders(models / "models"))
    return ltx2.hook("pipeline")(ltx2.variant_table()[BUNDLE], files, LoadRequest(dtype=torch.float32))


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


@pytest.fixture(scope="module")
def parts(comfy):
    model, = run(comfy, "VideosDGXLTX2Loader", variant=BUNDLE, ckpt_name=DIT, distilled_lora="none",
                 weight_dtype="default", weight_format="default")
    encoder, = run(comfy, "VideosDGXLTX25TextEncoderLoader", text_encoder_name=GEMMA4, tokenizer=TOKENIZER,
                   dit_name=DIT, weight_dtype="default")
    vae, = run(comfy, "VideosDGXLTX2VAELoader", vae_name=CONV_VAE, weight_dtype="default")
    audio_vae, = run(comfy, "VideosDGXLTX2AudioVAELoader", audio_vae_name=AUDIO_VAE, weight_dtype="default")
    decoder, = run(comfy, "VideosDGXLTX25VideoDecoderLoader", decoder_name=DIFFUSION_VAE, weight_dtype="default")
    head, = run(comfy, "VideosDGXLTX25DurationHeadLoader", duration_head_name=HEAD)
    spatial, temporal = (run(comfy, "VideosDGXLTX2UpsamplerLoader", upsampler_name=name, weight_dtype="default")[0]
                         for name in (SPATIAL, TEMPORAL))
    return dict(model=model, encoder=encoder, vae=vae, audio_vae=audio_vae, decoder=decoder, head=head,
                upsampler=spatial, temporal=temporal)


def node_video(comfy, parts, length: int = 0, seed: int = 3, **inputs):
    """Prompt -> length -> latents -> frames + sound through the nodes; (latent, frames, audio, length)."""
    conditioning, = run(comfy, "VideosDGXLTX2TextEncode", text_encoder=parts["encoder"], prompt=PROMPT,
                        negative_prompt="", release_gemma=False)
    length, = run(comfy, "VideosDGXLTX25Length", duration_head=parts["head"], conditioning=conditioning, fps=24,
                  length=length)
    settings = dict(width=64, height=64, length=length, fps=24, seed=seed, steps=2, cfg=3.0, audio_cfg=7.0, stg=1.0,
                    modality=3.0, rescale=0.7, two_stage=True, upsampler=parts["upsampler"],
                    video_decoder=parts["decoder"]) | inputs
    latent, = run(comfy, "VideosDGXLTX2Sampler", model=parts["model"], conditioning=conditioning, vae=parts["vae"],
                  audio_vae=parts["audio_vae"], **settings)
    frames, audio, fps = run(comfy, "VideosDGXLTX25Decode", latent=latent, video_decoder=parts["decoder"],
                             audio_vae=parts["audio_vae"], seed=seed)
    assert fps == latent.fps
    return latent, frames, audio, length


def assert_same_video(latent, frames, audio, result) -> None:
    video, sound = result.latents
    assert latent.video.shape == video.shape and latent.audio.shape == sound.shape
    torch.testing.assert_close(latent.video, video, rtol=0, atol=1e-5)
    torch.testing.assert_close(latent.audio, sound, rtol=0, atol=1e-5)
    torch.testing.assert_close(frames, result.frames, rtol=0, atol=1e-5)
    torch.testing.assert_close(audio["waveform"], result.audio["waveform"], rtol=0, atol=1e-5)
    assert audio["sample_rate"] == result.audio["sample_rate"] == 48000


def test_text_to_video_nodes_make_what_generate_makes_with_the_predicted_length(comfy, parts, engine):
    latent, frames, audio, length = node_video(comfy, parts)
    result = engine.generate(VideoRequest(PROMPT, width=64, height=64, steps=2, seed=3))
    assert length == result.frames.shape[0] and (length - 1) % 8 == 0
    assert_same_video(latent, frames, audio, result)
    assert not parts["model"].dit._text_cache  # the K/V cache does not outlive the run
    conv, _, _ = run(comfy, "VideosDGXLTX2Decode", latent=latent, vae=parts["vae"], audio_vae=parts["audio_vae"])
    expected = engine.decode_frames(result.latents[0], VideoRequest(PROMPT, options={"video_decoder": "conv"}))
    torch.testing.assert_close(conv, expected, rtol=0, atol=1e-5)  # LTX-2 Decode: the conv VAE on 2.5 latents


def test_image_to_video_nodes_make_what_generate_makes(comfy, parts, engine):
    image = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    latent, frames, audio, length = node_video(comfy, parts, length=9, image=image)
    result = engine.generate(VideoRequest(PROMPT, image=image, width=64, height=64, frames=9, steps=2, seed=3))
    assert length == 9 and frames.shape == (9, 64, 64, 3)
    assert_same_video(latent, frames, audio, result)


def test_first_last_frame_nodes_make_what_generate_makes_and_use_the_last_frame(comfy, parts, engine):
    first, last = (torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1))
    latent, frames, audio, _ = node_video(comfy, parts, length=17, image=first, end_image=last)
    result = engine.generate(VideoRequest(PROMPT, image=first, end_image=last, width=64, height=64, frames=17,
                                          steps=2, seed=3))
    assert_same_video(latent, frames, audio, result)
    without, *_ = node_video(comfy, parts, length=17, image=first)
    assert (latent.video[:, :, -1] - without.video[:, :, -1]).abs().max() > 1e-3  # the last frame is conditioned


def test_temporal_upscale_nodes_make_what_generate_makes_at_twice_the_frame_rate(comfy, parts, engine):
    latent, frames, audio, _ = node_video(comfy, parts, length=9, temporal_upsampler=parts["temporal"],
                                          temporal_upscale=True)
    result = engine.generate(VideoRequest(PROMPT, width=64, height=64, frames=9, steps=2, seed=3,
                                          options={"temporal_upscale": True}))
    assert frames.shape[0] == 17 and latent.fps == result.fps == 48
    assert_same_video(latent, frames, audio, result)  # the sound cut to the 17 frames' duration, as generate


def test_the_sampler_refuses_a_temporal_upscaler_as_its_x2_upsampler(comfy, parts):
    from videosdgx.ltx2.upsampler import LTX2LatentUpsampler, UpsamplerConfig

    temporal = LTX2LatentUpsampler(UpsamplerConfig(in_channels=8, mid_channels=32, blocks=1, mode="temporal"))
    with pytest.raises(WrongComponentError, match="The upsampler is a temporal latent upscaler"):
        run(comfy, "VideosDGXLTX2Sampler", model=parts["model"], conditioning=None, vae=parts["vae"],
            audio_vae=parts["audio_vae"], upsampler=temporal, width=64, height=64, length=9, fps=24, seed=0,
            steps=2, cfg=1.0, audio_cfg=1.0, stg=0.0, modality=1.0, rescale=0.0, two_stage=True)


def test_loaders_validate_their_inputs(comfy):
    text = comfy.nodes["VideosDGXLTX25TextEncoderLoader"]
    assert text.validate_inputs(text_encoder_name=GEMMA4, tokenizer=TOKENIZER, dit_name=DIT) is True
    assert TOKENIZER in text.define_schema().inputs[1].options
    missing = text.validate_inputs(text_encoder_name="gemma4.safetensors", tokenizer="auto", dit_name="none")
    assert "'gemma4.safetensors' is not in text_encoders" in missing
    no_tokenizer = text.validate_inputs(text_encoder_name=GEMMA4, tokenizer="gemma4/tokenizer.json", dit_name="none")
    assert "'gemma4/tokenizer.json' is not in text_encoders" in no_tokenizer
    assert "weight_dtype 'fp64'" in text.validate_inputs(text_encoder_name=GEMMA4, tokenizer="auto",
                                                         dit_name="none", weight_dtype="fp64")
    assert "'dit.safetensors' is not in checkpoints" in text.validate_inputs(
        text_encoder_name=GEMMA4, tokenizer="auto", dit_name="dit.safetensors")
    assert "weight_dtype 'fp64'" in comfy.nodes["VideosDGXLTX25VideoDecoderLoader"].validate_inputs(
        decoder_name=DIFFUSION_VAE, weight_dtype="fp64")
    head = comfy.nodes["VideosDGXLTX25DurationHeadLoader"]
    assert "'head.safetensors' is not in model_patches" in head.validate_inputs(duration_head_name="head.safetensors")


def test_a_missing_bundle_file_names_its_install_command(comfy, models):
    decoder, head = (comfy.nodes[f"VideosDGXLTX25{name}Loader"] for name in ("VideoDecoder", "DurationHead"))
    assert decoder.validate_inputs(decoder_name=DIFFUSION_VAE) is True
    assert head.validate_inputs(duration_head_name=HEAD) is True
    for folder, name, check in (("vae", DIFFUSION_VAE, lambda: decoder.validate_inputs(decoder_name=DIFFUSION_VAE)),
                                ("model_patches", HEAD, lambda: head.validate_inputs(duration_head_name=HEAD))):
        path = models / "models" / folder / name
        path.rename(path.with_suffix(".moved"))
        try:
            assert f"models/{folder}/{name} comes with bundle {BUNDLE}" in check()
        finally:
            path.with_suffix(".moved").rename(path)


def test_loaders_refuse_the_wrong_file(comfy, models):
    with pytest.raises(WrongComponentError, match="audio VAE"):
        run(comfy, "VideosDGXLTX25VideoDecoderLoader", decoder_name=AUDIO_VAE, weight_dtype="default")
    wrong = models / "models" / "model_patches" / "not-a-head.safetensors"
    shutil.copy(models / "models" / "vae" / AUDIO_VAE, wrong)
    with pytest.raises(WrongComponentError, match="audio VAE"):
        run(comfy, "VideosDGXLTX25DurationHeadLoader", duration_head_name=wrong.name)


WORKFLOWS = ("ltx-2.5-22b-distilled", "ltx-2.5-22b-distilled-i2v", "ltx-2.5-22b-distilled-flf")


@pytest.mark.parametrize("name", WORKFLOWS)
def test_shipped_workflows_use_the_bundle_files_and_the_official_settings(name):
    from videosdgx.manifest import load_manifest
    from workflow_harness import api_workflow, editor_workflow, workflow_variant

    variant, workflow = workflow_variant(name), api_workflow(name)
    assert variant.name == BUNDLE
    ids = {node["class_type"]: key for key, node in workflow.items()}
    sampler, length, decode, create = (workflow[ids[kind]]["inputs"] for kind in (
        "VideosDGXLTX2Sampler", "VideosDGXLTX25Length", "VideosDGXLTX25Decode", "CreateVideo"))
    assert (sampler["width"], sampler["height"], sampler["fps"], sampler["steps"]) == (
        variant.width, variant.height, variant.fps, 0)
    assert sampler["length"] == [ids["VideosDGXLTX25Length"], 0] and length == length | {"length": 0, "fps": 24}
    assert decode["seed"] == sampler["seed"]  # what generate decodes with
    assert sampler["video_decoder"] == decode["video_decoder"]  # its latent statistics scale the upscalers
    assert create["fps"] == [ids["VideosDGXLTX25Decode"], 2]  # doubled by a temporal x2 upscale
    assert sampler["two_stage"] is variant.two_stage is True and sampler["temporal_upscale"] is False
    entries = load_manifest().bundle_entries(BUNDLE)
    files = {entry.role: entry.filename for entry in entries}
    assert [workflow[sampler[role][0]]["inputs"]["upsampler_name"] for role in ("upsampler", "temporal_upsampler")] \
        == [files["upsampler"], files["temporal_upsampler"]]
    used = {value for node in workflow.values() for key, value in node["inputs"].items()
            if key.endswith("_name") or key == "tokenizer"}
    assert used == {entry.filename for entry in entries}
    loads = {key: node["_meta"]["title"] for key, node in workflow.items() if node["class_type"] == "LoadImage"}
    fed = {slot: loads[sampler[slot][0]] for slot in ("image", "end_image") if slot in sampler}
    assert fed == {"": {}, "-i2v": {"image": "Input Image"},
                   "-flf": {"image": "Input Image", "end_image": "Input End Image"}}[name.removeprefix(BUNDLE)]
    assert len(loads) == len(fed)
    [note] = [node["widgets_values"][0] for node in editor_workflow(name)["nodes"] if node["type"] == "Note"]
    assert "huggingface.co/Lightricks/LTX-2.5" in note and "HF_TOKEN" in note
    assert all(f"models/{entry.folder}/{entry.filename}" in note for entry in entries)


@pytest.mark.parametrize("media, name", [((), "ltx-2.5-22b-distilled"), (("--image",), "ltx-2.5-22b-distilled-i2v"),
                                         (("--image", "--end-image"), "ltx-2.5-22b-distilled-flf")])
def test_generate_on_a_server_picks_the_workflow_of_the_given_images(tmp_path, media, name):
    from fake_comfy import FakeComfy
    from test_generate_cli import server_run, shipped, titled, write_png

    from videosdgx.cli import main

    workflow = shipped(name)
    images = [arg for flag in media for arg in (flag, str(write_png(tmp_path / f"{flag[2:]}.png", seed=len(flag))))]
    with FakeComfy(server_run(titled(workflow, "Save Video"), b"x")) as fake:
        code = main(["generate", "--model", BUNDLE, "--server", fake.url, "--prompt", "a cat", "--frames", "49",
                     *images, "--out", str(tmp_path / "out")])
    assert code == 0
    submitted = fake.prompts[0]["prompt"]
    assert {key: node["class_type"] for key, node in submitted.items()} == {
        key: node["class_type"] for key, node in workflow.items()}
    assert submitted[titled(workflow, "Video Length")]["inputs"]["length"] == 49
    uploaded = {titled(workflow, title): f"{kind}.png" for title, kind in (("Input Image", "image"),
                                                                          ("Input End Image", "end-image"))
                if f"--{kind}" in media}
    assert {key: submitted[key]["inputs"]["image"] for key in uploaded} == uploaded


def test_videosdgx_run_uploads_the_end_image_to_its_titled_node(tmp_path):
    from fake_comfy import FakeComfy
    from test_client import cli
    from test_generate_cli import server_run, shipped, titled, write_png

    name = "ltx-2.5-22b-distilled-flf"
    workflow = shipped(name)
    first, last = (write_png(tmp_path / f"{kind}.png", seed=seed) for seed, kind in enumerate(("first", "last")))
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(workflow))
    with FakeComfy(server_run(titled(workflow, "Save Video"), b"x")) as fake:
        assert cli(str(path), "--server", fake.url, "--image", str(first), "--end-image", str(last),
                   "--out", str(tmp_path / "out")) == 0
    submitted = fake.prompts[0]["prompt"]
    assert submitted[titled(workflow, "Input Image")]["inputs"]["image"] == "first.png"
    assert submitted[titled(workflow, "Input End Image")]["inputs"]["image"] == "last.png"


def test_the_decode_node_tiles_as_asked_and_refuses_odd_tile_sizes(comfy, parts):
    from videosdgx.ltx2.diffusion_tiling import decoder_tiles, smallest_tiles
    from videosdgx.ltx2.pipeline25 import diffusion_decode

    latent, _, _, _ = node_video(comfy, parts, length=17)
    decoder = parts["decoder"]
    frames = smallest_tiles(decoder.config)[0]
    asked = {"decoder_tile_frames": frames}
    assert decoder_tiles(decoder, tuple(latent.video.shape[2:]), asked).frames == frames
    tiled, _, _ = run(comfy, "VideosDGXLTX25Decode", latent=latent, video_decoder=decoder,
                      audio_vae=parts["audio_vae"], seed=3, tile_frames=frames, tile_size=0)
    assert torch.equal(tiled, diffusion_decode(decoder, latent.video, 3, None, asked))
    node = comfy.nodes["VideosDGXLTX25Decode"]
    assert node.validate_inputs(tile_frames=frames, tile_size=0) is True
    assert node.validate_inputs(tile_frames=12) == ("tile_frames=12: give a multiple of 8, or 0 to have it chosen "
                                                    "from the free memory.")
    assert node.validate_inputs(tile_size=200).startswith("tile_size=200: give a multiple of 32")
