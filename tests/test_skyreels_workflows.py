"""The shipped SkyReels V3 workflow: runs in-process on tiny weights, its editor file converts to its API twin,
and it carries the official settings and the manifest's file names."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from test_workflows import CORE_OBJECT_INFO, TINY, api_workflow, by_class, editor_workflow, execute, object_info
from videosdgx.client.convert import to_api
from videosdgx.client.overrides import apply_assignments, plan_overrides
from videosdgx.manifest import load_manifest
from videosdgx.media import read_video
from videosdgx.skyreels_v3.variants import skyreels_variant
from videosdgx.testing.skyreels_v3 import write_skyreels_bundle

NAME = "skyreels-v3-r2v-14b"
MODEL_INPUTS = ("model_name", "text_encoder_name", "vae_name")


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    import core_nodes

    base = tmp_path_factory.mktemp("comfyui")
    write_skyreels_bundle(NAME, base / "models")
    (base / "input").mkdir()
    Image.new("RGB", (48, 40), (200, 120, 40)).save(base / "input" / "example.png")
    comfy_pack.folder_paths.set_base(base)
    comfy_pack.classes = {**comfy_pack.nodes, "CreateVideo": core_nodes.CreateVideo,
                          "SaveVideo": core_nodes.SaveVideo, "LoadImage": core_nodes.LoadImage}
    return comfy_pack


def test_api_workflow_runs_on_tiny_weights(comfy):
    prompt = apply_assignments(api_workflow(NAME), plan_overrides(api_workflow(NAME), TINY))
    saved, = execute(prompt, comfy.classes).values()
    file, = saved["images"]
    clip = read_video(Path(comfy.folder_paths.get_output_directory()) / "video" / file["filename"])
    assert clip.frames.shape == (5, 32, 32, 3) and clip.fps == 24


def test_editor_workflow_converts_to_its_api_twin(comfy):
    info = {**object_info(comfy.nodes), **CORE_OBJECT_INFO}
    assert to_api(editor_workflow(NAME), info) == api_workflow(NAME)


def test_official_settings_and_manifest_files():
    variant, workflow = skyreels_variant(NAME), api_workflow(NAME)
    sampler = by_class(workflow, "VideosDGXSkyReelsReferenceToVideo")
    assert (sampler["steps"], sampler["shift"], sampler["cfg"], sampler["length"]) == (
        variant.steps, variant.shift, variant.guidance, variant.frames)
    assert (sampler["width"], sampler["height"], sampler["resolution"]) == (0, 0, variant.resolution)
    assert by_class(workflow, "CreateVideo")["fps"] == variant.fps
    used = {value for node in workflow.values() for key, value in node["inputs"].items() if key in MODEL_INPUTS}
    assert used == {entry.filename for entry in load_manifest().bundle_entries(NAME)}
    assert variant.title.split(" (")[0] in editor_workflow(NAME)["nodes"][-1]["widgets_values"][0]
