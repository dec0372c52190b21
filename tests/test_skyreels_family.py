"""SkyReels V3 through the family seam, as `videosdgx generate --model skyreels-v3-r2v-14b --demo` runs it:
registry row -> variant -> demo files -> files by role -> pipeline hook -> VideoResult -> MP4; and the CLI itself."""

import logging

import pytest
import torch
import yaml
from PIL import Image

from videosdgx.bundle_files import find_bundle_files
from videosdgx.cli import main
from videosdgx.families import all_variants, family
from videosdgx.install.comfyui import model_folders
from videosdgx.job import VideoRequest
from videosdgx.manifest import DEFAULT_MANIFEST, MANIFEST_VARIABLE, load_manifest
from videosdgx.media.video import read_video, write_video
from videosdgx.runtime.model_files import LoadRequest


def test_r2v_bundle_runs_through_the_registry_hooks(tmp_path):
    row, manifest = family("skyreels_v3"), load_manifest()
    bundle = manifest.bundle("skyreels-v3-r2v-14b")
    variant = row.variant_table()[bundle.variant or bundle.name]
    assert all_variants()[variant.name] is variant and variant.max_references == 4
    row.hook("demo")(bundle.name, tmp_path / "models")
    files = find_bundle_files(bundle.name, model_folders(models_dir=tmp_path / "models"), manifest)
    assert set(files.paths) == {"dit", "text_encoder", "vae"}
    pipeline = row.hook("pipeline")(variant, files, LoadRequest(), True)
    references = (torch.rand(1, 24, 32, 3), torch.rand(1, 32, 24, 3))
    result = pipeline.generate(VideoRequest(prompt="two friends", references=references, width=48, height=32,
                                            frames=5, steps=1))
    out = write_video(tmp_path / "r2v.mp4", result.frames, result.fps)
    assert read_video(out).frames.shape[0] == 5


def test_cli_generate_demo_with_references(tmp_path):
    paths = []
    for index, size in enumerate(((60, 40), (30, 50))):
        paths += ["--reference", str(tmp_path / f"ref{index}.png")]
        Image.new("RGB", size, (200, 40 * index, 50)).save(paths[-1])
    out = tmp_path / "r2v.mp4"
    code = main(["generate", "--demo", "--model", "skyreels-v3-r2v-14b", *paths, "--prompt", "two friends",
                 "--width", "48", "--height", "32", "--frames", "5", "--steps", "1", "--out", str(out)])
    assert code == 0 and read_video(out).frames.shape == (5, 32, 48, 3)


def write_clip(path, frames: int):
    return write_video(path, torch.rand(frames, 48, 64, 3, generator=torch.Generator().manual_seed(0)), 24)


@pytest.mark.parametrize("mode, seconds, frames", [
    ("extend", 1, 4 * (9 + 7 - 1) + 1 - 25),  # 6 latent frames padded to 9 after the 7 of the last 25 input frames
    ("shot", 2, 2 * 24 + 1),
])
def test_cli_video_extension_with_options(tmp_path, mode, seconds, frames):
    """`--video in.mp4 --option mode=... --option duration=...` on the V2V bundle with --demo."""
    out, video = tmp_path / "more.mp4", str(write_clip(tmp_path / "in.mp4", 30))
    code = main(["generate", "--demo", "--model", "skyreels-v3-v2v-14b", "--video", video, "--option", f"mode={mode}",
                 "--option", f"duration={seconds}", "--prompt", "[ZOOM_IN_CUT] a new angle", "--width", "64",
                 "--height", "32", "--steps", "1", "--out", str(out)])
    assert code == 0 and read_video(out).frames.shape == (frames, 32, 64, 3)


@pytest.mark.parametrize("options, message", [
    (["--option", "mode"], "--option mode: write KEY=VALUE, e.g. --option mode=extend."),
    (["--option", "mode=shot", "--option", "mode=extend"], "--option mode is given twice"),
    (["--option", "speed=2"], "has no option speed; it takes mode, duration, resolution"),
    (["--option", "mode=loop"], "Unknown SkyReels V3 V2V mode 'loop'; choose 'extend' or 'shot'."),
    (["--option", "mode=shot", "--option", "duration=7"], "A SkyReels V3 shot switch lasts 2, 3, 4 or 5 seconds"),
    (["--option", "duration=31"], "extends a video by 1 to 30 seconds, got 31"),
    (["--option", "resolution=4K"], "Unknown resolution '4K'"),
    (["--short"], "The input video has 10 frames; SkyReels V3 extension needs at least 25"),
])
def test_cli_bad_v2v_options_fail_before_loading(tmp_path, caplog, options, message):
    frames = 10 if "--short" in options else 30
    options = [o for o in options if o != "--short"]
    code = main(["generate", "--demo", "--model", "skyreels-v3-v2v-14b", "--video",
                 str(write_clip(tmp_path / "in.mp4", frames)), *options, "--prompt", "more",
                 "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert message in error
    assert not any(r.getMessage().startswith("loading") for r in caplog.records)


def test_planned_bundles_run_only_with_demo_and_options_only_in_process(tmp_path, caplog, monkeypatch):
    data = yaml.safe_load(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    next(b for b in data["bundles"] if b["name"] == "skyreels-v3-v2v-14b")["status"] = "planned"
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv(MANIFEST_VARIABLE, str(tmp_path / "manifest.yaml"))
    assert main(["generate", "--model", "skyreels-v3-v2v-14b", "--video", str(write_clip(tmp_path / "in.mp4", 30)),
                 "--prompt", "more", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "--model skyreels-v3-v2v-14b:" in caplog.text and "Runnable bundles" in caplog.text
    caplog.clear()
    assert main(["generate", "--server", "http://127.0.0.1:9", "--prompt", "a cat", "--option", "resolution=480P",
                 "--out", str(tmp_path)]) == 2
    assert "--option only apply in-process" in caplog.text
