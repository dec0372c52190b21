"""SkyReels V3 through the family seam, as `videosdgx generate --model skyreels-v3-r2v-14b --demo` runs it:
registry row -> variant -> demo files -> files by role -> pipeline hook -> VideoResult -> MP4; and the CLI itself."""

import torch
from PIL import Image

from videosdgx.bundle_files import find_bundle_files
from videosdgx.cli import main
from videosdgx.families import all_variants, family
from videosdgx.install.comfyui import model_folders
from videosdgx.job import VideoRequest
from videosdgx.manifest import load_manifest
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
