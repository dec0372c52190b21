"""The shipped workflows of every family: each API-format file runs in-process on tiny weights through the
harness that behaves like ComfyUI's, each editor-format file converts to exactly its API twin; Wan's follow the
official settings, the manifest's file names and the headless client's title conventions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from videosdgx.client.convert import read_links, to_api
from videosdgx.client.overrides import Overrides, apply_assignments, plan_overrides
from videosdgx.families import shipped_workflows
from videosdgx.manifest import load_manifest
from videosdgx.media import read_video
from videosdgx.wan.lightning import lightning_sigmas
from videosdgx.wan.text_prompt import WAN_I2V_NEGATIVE_PROMPT
from workflow_harness import (CORE_OBJECT_INFO, WORKFLOWS, api_workflow, editor_workflow, execute, object_info,
                              prepare_comfy, workflow_variant)

NAMES = sorted(shipped_workflows())
WAN_NAMES = sorted(name for name, row in shipped_workflows().items() if row.id == "wan")
IMAGE_WORKFLOWS = {"wan2.1-i2v-14b-480p", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b-i2v", "wan2.2-i2v-a14b-lightning"}
MODEL_INPUTS = ("model_name", "low_noise_model", "text_encoder_name", "vae_name", "clip_name", "lora_name")
TINY = Overrides(seed=3, steps=2, width=32, height=32, frames=5)
# LTX-2 makes 8k+1 frames, and its two-stage flow needs sides that are multiples of 64.
# MAGI-1: steps in multiples of 4, frames in whole 24-frame chunks (20 frames, +1 latent frame for I2V: 1 chunk).
TINY_BY_FAMILY = {  # family -> (overrides, frames of the video it makes)
    "ltx2": (Overrides(seed=3, steps=2, width=64, height=64, frames=9), 9),
    "magi1": (Overrides(seed=3, steps=4, width=32, height=32, frames=20), 24),
}
# Workflows whose length is not a frame count (V2V: the seconds added to the input video), and the frames their
# tiny run makes with the shipped 5 s: extension 33 new latent frames decoded after the 7 prefix ones, less the 25
# prefix frames; a 5 s shot 5 * 24 + 1.
TINY_BY_WORKFLOW = {
    "skyreels-v3-v2v-14b-extend": (replace(TINY, frames=None), 4 * (33 + 7 - 1) + 1 - 25),
    "skyreels-v3-v2v-14b-shot": (replace(TINY, frames=None), 5 * 24 + 1),
    # MAGI-1 V2V makes new frames only: the input's first 32 frames are 8 prefix latent frames, + 5 new = 3 chunks;
    # chunk 0 is prefix, chunk 1 emits its 4 new latent frames (13 frames), chunk 2 all 24.
    "magi-1-4.5b-distill-v2v": (TINY_BY_FAMILY["magi1"][0], 13 + 24),
}


def by_class(workflow: dict, class_type: str) -> dict:
    found = [node for node in workflow.values() if node["class_type"] == class_type]
    assert len(found) == 1, class_type
    return found[0]["inputs"]


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    return prepare_comfy(comfy_pack, tmp_path_factory.mktemp("comfyui"), NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs_on_tiny_weights(comfy, name):
    variant = workflow_variant(name)
    tiny, frames = TINY_BY_WORKFLOW.get(name) or TINY_BY_FAMILY.get(variant.family, (TINY, 5))
    prompt = apply_assignments(api_workflow(name), plan_overrides(api_workflow(name), tiny))
    ui = execute(prompt, comfy.classes)
    saved, = ui.values()
    file, = saved["images"]
    assert saved["animated"] == (True,) and file["type"] == "output" and file["subfolder"] == "video"
    assert file["filename"] == f"{name}_00001_.mp4"
    clip = read_video(Path(comfy.folder_paths.get_output_directory()) / "video" / file["filename"])
    assert clip.frames.shape == (frames, tiny.height, tiny.width, 3) and clip.fps == variant.fps


@pytest.mark.parametrize("name", NAMES)
def test_editor_workflow_converts_to_its_api_twin(comfy, name):
    info = {**object_info(comfy.nodes), **CORE_OBJECT_INFO}
    assert to_api(editor_workflow(name), info) == api_workflow(name)


@pytest.mark.parametrize("name", NAMES)
def test_node_types_exist(comfy, name):
    known = set(comfy.nodes) | set(CORE_OBJECT_INFO)
    assert {node["class_type"] for node in api_workflow(name).values()} <= known
    assert {node["type"] for node in editor_workflow(name)["nodes"]} - known == {"Note"}


@pytest.mark.parametrize("name", NAMES)
def test_editor_graph_is_consistent(name):
    workflow = editor_workflow(name)
    assert workflow["version"] == 0.4 and isinstance(workflow["groups"], list)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = read_links(workflow)
    assert workflow["last_node_id"] == max(nodes) and workflow["last_link_id"] == max(links)
    for link_id, link in links.items():
        source, target = nodes[link.origin_id], nodes[link.target_id]
        assert link_id in source["outputs"][link.origin_slot]["links"]
        assert target["inputs"][link.target_slot]["link"] == link_id
        assert source["outputs"][link.origin_slot]["type"] == target["inputs"][link.target_slot]["type"] == link.type
    for node in nodes.values():
        assert {"pos", "size", "inputs", "outputs", "widgets_values", "mode", "order"} <= set(node)
        for slot in node["inputs"]:
            assert slot["link"] is None or slot["link"] in links
    note, = [node for node in nodes.values() if node["type"] == "Note"]
    assert workflow_variant(name).title in note["widgets_values"][0]


@pytest.mark.parametrize("name", WAN_NAMES)
def test_official_settings_and_manifest_files(name):
    variant = workflow_variant(name)
    workflow = api_workflow(name)
    sampler = by_class(workflow, "VideosDGXWanSampler")
    assert (sampler["steps"], sampler["shift"], sampler["cfg"], sampler["sampler"], sampler["denoise"]) == (
        variant.steps, variant.shift, variant.guidance, variant.solver, 1.0)
    if variant.schedule == "lightning":  # the published schedule as the sampler's sigma list
        sigmas = tuple(float(v) for v in sampler["sigmas"].split(","))
        assert sigmas == pytest.approx(lightning_sigmas(variant.steps, variant.shift), abs=1e-6)
    assert "sigmas" not in sampler or variant.schedule == "lightning"
    assert sampler["cfg_low_noise"] == (variant.guidance_low or variant.guidance)
    assert by_class(workflow, "CreateVideo")["fps"] == variant.fps
    size = next(node["inputs"] for node in workflow.values() if node["_meta"]["title"] == "Video Size")
    assert (size["width"], size["height"], size["length"]) == (variant.width, variant.height, variant.frames)
    text = by_class(workflow, "VideosDGXWanTextEncode")
    assert text["negative_prompt"] == (WAN_I2V_NEGATIVE_PROMPT if variant.negative_prompt == WAN_I2V_NEGATIVE_PROMPT else "")
    used = {value for node in workflow.values() for key, value in node["inputs"].items()
            if key in MODEL_INPUTS and value != "none"}
    assert used == {entry.filename for entry in load_manifest().bundle_entries(variant.name)}
    assert ("VideosDGXWanCLIPVisionLoader" in {n["class_type"] for n in workflow.values()}) == variant.clip_vision
    assert ("LoadImage" in {n["class_type"] for n in workflow.values()}) == (name in IMAGE_WORKFLOWS)


@pytest.mark.parametrize("name", WAN_NAMES)
def test_client_parameters_find_their_nodes(name):
    workflow = api_workflow(name)
    image = name in IMAGE_WORKFLOWS
    plan = plan_overrides(workflow, Overrides(prompt="p", seed=1, steps=2, width=64, height=48, frames=9,
                                              image=Path("x.png") if image else None))
    targets = {(workflow[a.node_id]["class_type"], a.input) for a in plan}
    size_node = "VideosDGXWanImageToVideo" if image else "VideosDGXWanEmptyLatent"
    expected = {("VideosDGXWanTextEncode", "prompt"), ("VideosDGXWanSampler", "seed"), ("VideosDGXWanSampler", "steps"),
                (size_node, "width"), (size_node, "height"), (size_node, "length")}
    assert targets == expected | ({("LoadImage", "image")} if image else set())
    assert len(plan) == len(expected) + image


@pytest.mark.parametrize("name", NAMES)
def test_template_has_a_thumbnail_and_a_description(name):
    """ComfyUI's template browser shows NAME.jpg (scripts/thumbnails.py draws it from the workflow's Note)."""
    from PIL import Image

    thumbnail = WORKFLOWS / f"{name}.jpg"
    assert 2_000 < thumbnail.stat().st_size < 100_000
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.size == (384, 384)
    [note] = [node for node in editor_workflow(name)["nodes"] if node["type"] == "Note"]
    head = note["widgets_values"][0].splitlines()[0]
    assert head.startswith(workflow_variant(name).title + " — ") and "Model files" in note["widgets_values"][0]
