"""The shipped SkyReels V3 workflow's own settings (running it, its API twin and its graph are checked for every
shipped workflow in test_workflows.py): the official values, the manifest's files, the client's parameters."""

from __future__ import annotations

from pathlib import Path

from videosdgx.client.overrides import Overrides, plan_overrides
from videosdgx.manifest import load_manifest
from workflow_harness import api_workflow, workflow_variant

NAME = "skyreels-v3-r2v-14b"
MODEL_INPUTS = ("model_name", "text_encoder_name", "vae_name")


def test_official_settings_and_manifest_files():
    variant, workflow = workflow_variant(NAME), api_workflow(NAME)
    [sampler] = [n["inputs"] for n in workflow.values() if n["class_type"] == "VideosDGXSkyReelsReferenceToVideo"]
    assert (sampler["steps"], sampler["shift"], sampler["cfg"], sampler["length"], sampler["sampler"]) == (
        variant.steps, variant.shift, variant.guidance, variant.frames, variant.solver)
    assert (sampler["width"], sampler["height"], sampler["resolution"]) == (0, 0, variant.resolution)
    [fps] = [n["inputs"]["fps"] for n in workflow.values() if n["class_type"] == "CreateVideo"]
    assert fps == variant.fps
    used = {value for node in workflow.values() for key, value in node["inputs"].items() if key in MODEL_INPUTS}
    assert used == {entry.filename for entry in load_manifest().bundle_entries(NAME)}


def test_client_parameters_find_their_nodes():
    workflow = api_workflow(NAME)
    plan = plan_overrides(workflow, Overrides(prompt="p", seed=1, steps=2, width=64, height=48, frames=9,
                                              image=Path("x.png")))
    targets = {(workflow[a.node_id]["class_type"], a.input) for a in plan}
    sampler = "VideosDGXSkyReelsReferenceToVideo"
    assert targets == {("VideosDGXWanTextEncode", "prompt"), ("LoadImage", "image"), (sampler, "seed"),
                       (sampler, "steps"), (sampler, "width"), (sampler, "height"), (sampler, "length")}
