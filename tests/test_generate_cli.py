"""`videosdgx generate`: in-process on demo weights and on a models folder, refusals, and `--server` against the
fake ComfyUI server with the shipped API workflows."""

import copy
import json
import logging
from pathlib import Path

import numpy as np
from fake_comfy import FakeComfy, Scenario, Text, messages
from PIL import Image

import pytest

from videosdgx.cli import main
from videosdgx.media import read_video
from videosdgx.paths import shipped as shipped_path
from videosdgx.testing.wan import write_wan_models

TINY = ["--width", "96", "--height", "64", "--frames", "5", "--steps", "2"]
PID = "prompt-1"


def write_png(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_demo_writes_a_video_of_the_requested_size(tmp_path, capsys):
    out = tmp_path / "x.mp4"
    code = main(["generate", "--demo", "--prompt", "a red fox in snow", *TINY, "--seed", "7", "--out", str(out)])
    assert code == 0
    clip = read_video(out)
    assert clip.frames.shape == (5, 64, 96, 3) and clip.fps == 16
    assert clip.frames.std() > 0.05
    stdout = capsys.readouterr().out
    assert f"wrote {out} (5 frames, 96x64, 16 fps) - demo: random weights" in stdout


def test_every_wan_bundle_is_listed_and_the_fp8_one_runs(tmp_path, capsys):
    from videosdgx.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    for name in ("wan2.1-t2v-14b-fp8", "wan2.2-i2v-a14b-fp8", "wan2.2-ti2v-5b-official", "wan2.1-i2v-14b-720p"):
        assert f"  {name} " in help_text
    out = tmp_path / "fp8.mp4"
    assert main(["generate", "--demo", "--model", "wan2.1-t2v-14b-fp8", "--prompt", "a lighthouse", *TINY,
                 "--out", str(out)]) == 0
    assert read_video(out).frames.shape == (5, 64, 96, 3)


def test_demo_image_to_video_corrects_the_size(tmp_path, caplog):
    out = tmp_path / "i2v.mp4"
    image = write_png(tmp_path / "start.png")
    with caplog.at_level(logging.WARNING):
        code = main(["generate", "--demo", "--model", "wan2.1-i2v-14b-480p", "--prompt", "the scene comes alive",
                     "--image", str(image), "--width", "100", "--height", "70", "--frames", "6", "--steps", "2",
                     "--out", str(out)])
    assert code == 0
    assert read_video(out).frames.shape == (5, 64, 96, 3)
    assert "size 100x70 is not a multiple of 16; using 96x64" in caplog.messages
    assert "6 frames is not 4n+1; using 5 frames" in caplog.messages


def test_models_dir_with_installed_files(tmp_path):
    models = tmp_path / "models"
    write_wan_models("wan2.2-ti2v-5b", models)
    out = tmp_path / "ti2v.mp4"
    code = main(["generate", "--model", "wan2.2-ti2v-5b", "--models-dir", str(models), "--prompt", "waves",
                 *TINY, "--out", str(out)])
    assert code == 0
    clip = read_video(out)
    assert clip.frames.shape == (5, 64, 96, 3) and clip.fps == 24


def test_missing_models_folder_exits_1_naming_install(tmp_path, caplog):
    out = tmp_path / "never.mp4"
    code = main(["generate", "--model", "wan2.1-t2v-1.3b", "--models-dir", str(tmp_path / "nowhere"),
                 "--prompt", "a cat", *TINY, "--out", str(out)])
    assert code == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors" in error
    assert "python install.py --models wan2.1-t2v-1.3b" in error and "--demo" in error and "--download" in error
    assert not out.exists()


def test_fp8_bundle_in_an_empty_folder_names_every_missing_file(tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["generate", "--model", "wan2.1-t2v-14b-fp8", "--models-dir", str(empty), "--prompt", "a cat",
                 "--out", str(tmp_path / "x.mp4")])
    assert code == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    for name in ("diffusion_models/wan2.1_t2v_14B_fp8_scaled.safetensors",
                 "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "vae/wan_2.1_vae.safetensors"):
        assert name in error
    assert "python install.py --models wan2.1-t2v-14b-fp8" in error


@pytest.mark.parametrize("options, message", [
    (["--width", "8", "--height", "64"], "8x64, 5 frames is too small"),
    (["--width", "0"], "--width 0: must be at least 1"),
    (["--fps", "-1"], "--fps -1: must be at least 1"),
    (["--steps", "0"], "--steps 0: must be at least 1"),
    (["--frames", "0"], "--frames 0: must be at least 1"),
    (["--cfg", "nan"], "--cfg nan: a guidance scale is a finite number"),
    (["--cfg", "-2"], "--cfg -2.0: a guidance scale is a finite number"),
    (["--cfg-low", "inf"], "--cfg-low inf: a guidance scale"),
    (["--shift", "0"], "--shift 0.0: the sigma shift is a finite number > 0"),
    (["--seed", "-1"], "--seed -1: seeds range from 0 to"),
    (["--seed", str(2**64)], "seeds range from 0 to"),
    (["--device", "tpu"], "--device tpu: Unsupported device"),
    (["--device", "cuda"], "--device cuda: Device 'cuda' was asked for"),
    (["--image", "{png}"], "Wan2.1 T2V-1.3B takes no --image; it takes only a prompt"),
    (["--model", "wan2.1-i2v-14b-480p"], "Wan2.1 I2V-14B 480P needs --image"),
    (["--model", "wan2.1-flf2v-14b-720p", "--image", "{png}"], "needs --end-image"),
    (["--model", "wan2.1-i2v-14b-480p", "--image", "{txt}"], "not a readable image"),
    (["--model", "wan2.1-i2v-14b-480p", "--image", "{missing}"], "no such file"),
    (["--model", "wan2.1-i2v-14b-480p", "--image", "{dir}"], "is a folder"),
    (["--model", "no-such-model"], "--model no-such-model: no such bundle"),
    (["--model", "waver-1.0"], "--model waver-1.0: Waver 1.0 weights have not been published"),
    (["--out", "{dir}"], "is a folder; give a file name ending in .mp4"),
    (["--out", "{dir}/clip.avi"], "the video is written as MP4"),
    (["--out", "{txt}/x.mp4"], "cannot create its folder"),
    (["--video", "{png}"], "takes no --video"),
    (["--prompt", "second chunk"], "takes one --prompt"),
])
def test_bad_options_fail_in_seconds_before_loading(tmp_path, caplog, options, message):
    png = write_png(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    values = {"{png}": str(png), "{txt}": str(tmp_path / "notes.txt"), "{missing}": str(tmp_path / "nope.png"),
              "{dir}": str(tmp_path)}
    options = [values.get(o, o.replace("{dir}", str(tmp_path)).replace("{txt}", str(tmp_path / "notes.txt")))
               for o in options]
    out = [] if "--out" in options else ["--out", str(tmp_path / "x.mp4")]
    code = main(["generate", "--demo", "--prompt", "a cat", "--frames", "5", "--steps", "1", *out, *options])
    assert code == 2
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert message in error
    assert not any(record.getMessage().startswith("loading") for record in caplog.records)
    assert not (tmp_path / "x.mp4").exists()


def test_a_failed_write_keeps_the_frames(tmp_path, caplog, monkeypatch):
    import torch

    import videosdgx.media

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(videosdgx.media, "write_video", refuse)
    out = tmp_path / "full.mp4"
    code = main(["generate", "--demo", "--prompt", "a cat", *TINY, "--out", str(out)])
    assert code == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    rescue = tmp_path / "full.frames.pt"
    assert f"The frames are saved in {rescue}" in error and "No space left on device" in error
    saved = torch.load(rescue)
    assert saved["frames"].shape == (5, 64, 96, 3) and saved["fps"] == 16


# ----------------------------------------------------------------------------------------------------------------
# --server


def shipped(name: str) -> dict:
    path = shipped_path("workflows") / "api" / f"{name}.json"
    assert path.is_file(), f"no shipped workflow {path}"
    return json.loads(path.read_text())


def titled(workflow: dict, title: str) -> str:
    [node_id] = [key for key, node in workflow.items() if node.get("_meta", {}).get("title") == title]
    return node_id


def server_run(outputs_node: str, video: bytes) -> Scenario:
    outputs = {outputs_node: {"images": [{"filename": "wan_00001_.mp4", "subfolder": "video", "type": "output"}],
                              "animated": [True]}}
    steps = [Text(messages.execution_start(PID)), Text(messages.executing(PID, outputs_node)),
             Text(messages.executed(PID, outputs_node, outputs[outputs_node])), Text(messages.execution_success(PID))]
    return Scenario(steps=steps, outputs=outputs, files={("output", "video", "wan_00001_.mp4"): video})


def test_server_submits_the_shipped_workflow_with_overrides(tmp_path, capsys):
    workflow = shipped("wan2.1-t2v-1.3b")
    save = titled(workflow, "Save Video")
    with FakeComfy(server_run(save, b"mp4-bytes")) as fake:
        code = main(["generate", "--model", "wan2.1-t2v-1.3b", "--server", fake.url, "--prompt", "a lighthouse",
                     "--seed", "123", "--steps", "6", "--width", "512", "--height", "288", "--frames", "33",
                     "--out", str(tmp_path / "out")])
    assert code == 0
    [submitted] = [payload["prompt"] for payload in fake.prompts]
    expected = copy.deepcopy(workflow)
    expected[titled(workflow, "Prompt")]["inputs"]["prompt"] = "a lighthouse"
    sampler = expected[titled(workflow, "Wan Sampler (VideosDGX)")]["inputs"]
    sampler["seed"], sampler["steps"] = 123, 6
    expected[titled(workflow, "Video Size")]["inputs"].update(width=512, height=288, length=33)
    assert submitted == expected
    downloaded = (tmp_path / "out" / "video" / "wan_00001_.mp4").resolve()
    assert downloaded.read_bytes() == b"mp4-bytes"
    assert f"wrote {downloaded}" in capsys.readouterr().out


def test_server_keeps_the_workflow_defaults_that_are_not_overridden(tmp_path):
    workflow = shipped("wan2.2-t2v-a14b")
    with FakeComfy(server_run(titled(workflow, "Save Video"), b"x")) as fake:
        code = main(["generate", "--model", "wan2.2-t2v-a14b", "--server", fake.url, "--prompt", "a kite",
                     "--out", str(tmp_path)])
    assert code == 0
    submitted = fake.prompts[0]["prompt"]
    sampler = titled(workflow, "Wan Sampler (VideosDGX)")
    assert submitted[titled(workflow, "Prompt")]["inputs"]["prompt"] == "a kite"
    assert submitted[sampler]["inputs"]["seed"] == 0  # the CLI's default seed
    assert {key: value for key, value in submitted[sampler]["inputs"].items() if key != "seed"} == {
        key: value for key, value in workflow[sampler]["inputs"].items() if key != "seed"}


def test_server_image_to_video_uploads_the_start_image(tmp_path):
    workflow = shipped("wan2.2-ti2v-5b-i2v")
    image = write_png(tmp_path / "start.png", seed=3)
    scenario = server_run(titled(workflow, "Save Video"), b"x")
    scenario.upload_names = {"start.png": "start (1).png"}
    with FakeComfy(scenario) as fake:
        code = main(["generate", "--model", "wan2.2-ti2v-5b", "--server", fake.url, "--prompt", "it moves",
                     "--image", str(image), "--out", str(tmp_path / "out")])
    assert code == 0
    [upload] = fake.uploads
    assert upload["filename"] == "start.png" and upload["data"] == image.read_bytes()
    assert fake.prompts[0]["prompt"][titled(workflow, "Input Image")]["inputs"]["image"] == "start (1).png"


def test_server_passes_every_sampling_option(tmp_path):
    workflow = shipped("wan2.2-t2v-a14b")
    with FakeComfy(server_run(titled(workflow, "Save Video"), b"x")) as fake:
        code = main(["generate", "--model", "wan2.2-t2v-a14b-fp8", "--server", fake.url, "--prompt", "a kite",
                     "--cfg", "3.5", "--cfg-low", "2.5", "--shift", "8", "--solver", "euler", "--fps", "24",
                     "--weight-format", "fp8_e4m3fn", "--dtype", "bf16", "--out", str(tmp_path)])
    assert code == 0
    submitted = fake.prompts[0]["prompt"]
    sampler = submitted[titled(workflow, "Wan Sampler (VideosDGX)")]["inputs"]
    assert (sampler["cfg"], sampler["cfg_low_noise"], sampler["shift"], sampler["sampler"]) == (3.5, 2.5, 8.0, "euler")
    assert [n["inputs"]["fps"] for n in submitted.values() if n["class_type"] == "CreateVideo"] == [24]
    [loader] = [n["inputs"] for n in submitted.values() if n["class_type"] == "VideosDGXWanModelLoader"]
    assert (loader["weight_format"], loader["weight_dtype"]) == ("fp8_e4m3fn", "bf16")


@pytest.mark.parametrize("options, message", [
    (["--model", "wan2.1-flf2v-14b-720p", "--image", "{png}", "--end-image", "{png}"], "No workflow is shipped"),
    (["--low-memory"], "--low-memory only apply in-process"),
    (["--device", "cpu"], "--device only apply in-process"),
])
def test_server_refuses_options_it_cannot_pass(tmp_path, caplog, options, message):
    png = str(write_png(tmp_path / "a.png"))
    options = [png if o == "{png}" else o for o in options]
    code = main(["generate", "--server", "http://127.0.0.1:9", "--prompt", "a cat", *options, "--out", str(tmp_path)])
    assert code == 2
    [error] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert message in error


def test_server_applies_the_negative_prompt(tmp_path):
    workflow = shipped("wan2.1-t2v-1.3b")
    with FakeComfy(server_run(titled(workflow, "Save Video"), b"x")) as fake:
        code = main(["generate", "--model", "wan2.1-t2v-1.3b", "--server", fake.url, "--prompt", "a cat",
                     "--negative", "blurry, static", "--out", str(tmp_path)])
    assert code == 0
    inputs = fake.prompts[0]["prompt"][titled(workflow, "Prompt")]["inputs"]
    assert inputs["prompt"] == "a cat" and inputs["negative_prompt"] == "blurry, static"


def test_server_rejection_exits_with_the_client_code(tmp_path, caplog):
    error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
             "details": "", "extra_info": {}}
    node_errors = {"1": {"class_type": "VideosDGXWanModelLoader", "dependent_outputs": ["11"], "errors": [
        {"type": "value_not_in_list", "message": "Value not in list", "details": "model_name",
         "extra_info": {}}]}}
    with FakeComfy(Scenario(prompt_reply=(400, {"error": error, "node_errors": node_errors}))) as fake:
        code = main(["generate", "--model", "wan2.1-t2v-1.3b", "--server", fake.url, "--prompt", "a cat",
                     "--out", str(tmp_path / "out")])
    assert code == 2
    [message] = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert message.startswith("The server rejected the prompt: Prompt outputs failed validation")
    assert "value_not_in_list: Value not in list [model_name]" in message
    assert not (tmp_path / "out").exists()


def test_download_installs_the_bundle_then_generates(tmp_path, monkeypatch, capsys):
    import yaml
    from fake_hub import FakeHub

    from videosdgx.manifest import load_manifest
    from videosdgx.testing.wan import write_wan_bundle

    source = tmp_path / "source"
    write_wan_bundle("wan2.1-t2v-1.3b", source)
    real = load_manifest()
    entries, files = [], {}
    for entry in real.bundle_entries("wan2.1-t2v-1.3b"):
        content = (source / entry.folder / entry.filename).read_bytes()
        files[f"acme/tiny/{entry.filename}"] = content
        entries.append({**{k: getattr(entry, k) for k in ("id", "family", "role", "folder", "filename", "license")},
                        "repo": "acme/tiny", "path": entry.filename, "revision": "main", "size": len(content),
                        "size_verified": True, "gated": False})
    bundle = {"name": "tiny-wan", "family": "wan", "variant": "wan2.1-t2v-1.3b", "description": "tiny",
              "status": "available", "entries": [e["id"] for e in entries]}
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"version": 1, "entries": entries, "bundles": [bundle]}))
    monkeypatch.setenv("VIDEOSDGX_MANIFEST", str(manifest))
    models, out = tmp_path / "models", tmp_path / "tiny.mp4"
    command = ["generate", "--model", "tiny-wan", "--models-dir", str(models), "--prompt", "a cat", *TINY,
               "--out", str(out)]
    with FakeHub(files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(command) == 1  # without --download: names the files
        assert main([*command, "--download"]) == 0
        assert hub.count("GET") == 3
    assert read_video(out).frames.shape == (5, 64, 96, 3)
    assert (models / "vae" / "wan_2.1_vae.safetensors").read_bytes() == files["acme/tiny/wan_2.1_vae.safetensors"]
