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


def test_v2v_workflows_load_the_input_video_with_core_nodes():
    """LoadVideo -> GetVideoComponents -> Extend Video, official settings, the bundle's files (each its own DiT)."""
    variant, bundle_files = workflow_variant("skyreels-v3-v2v-14b-extend"), {
        entry.filename for entry in load_manifest().bundle_entries("skyreels-v3-v2v-14b")}
    for name, mode, dit in (("skyreels-v3-v2v-14b-extend", "extend", "skyreels_v3_v2v_14B"),
                            ("skyreels-v3-v2v-14b-shot", "shot", "skyreels_v3_v2v_shot_14B")):
        workflow = api_workflow(name)
        assert workflow_variant(name) is variant
        [node] = [n["inputs"] for n in workflow.values() if n["class_type"] == "VideosDGXSkyReelsExtendVideo"]
        assert (node["mode"], node["duration"], node["steps"], node["shift"], node["cfg"], node["sampler"]) == (
            mode, 5, variant.steps, variant.shift, variant.guidance, variant.solver)
        [components] = [i for i, n in workflow.items() if n["class_type"] == "GetVideoComponents"]
        assert node["video"] == [components, 0]
        assert workflow[workflow[components]["inputs"]["video"][0]]["class_type"] == "LoadVideo"
        used = {value for n in workflow.values() for key, value in n["inputs"].items() if key in MODEL_INPUTS}
        assert dit in used and used <= bundle_files
        overrides = Overrides(prompt="p", seed=1, steps=2, width=64, height=48, video=Path("x.mp4"))
        plan = plan_overrides(workflow, overrides)
        assert {(workflow[a.node_id]["class_type"], a.input) for a in plan} == {
            ("VideosDGXWanTextEncode", "prompt"), ("LoadVideo", "file"), ("VideosDGXSkyReelsExtendVideo", "seed"),
            ("VideosDGXSkyReelsExtendVideo", "steps"), ("VideosDGXSkyReelsExtendVideo", "width"),
            ("VideosDGXSkyReelsExtendVideo", "height")}


def test_avatar_workflow_settings_files_and_audio():
    """Portrait (LoadImage) + speech (core LoadAudio) -> Talking Avatar -> CreateVideo with the audio; the pipeline
    class's settings; every file of the avatar bundle; the client's parameters reach their nodes."""
    name = "skyreels-v3-a2v-19b"
    variant, workflow = workflow_variant(name), api_workflow(name)
    [avatar_id] = [i for i, n in workflow.items() if n["class_type"] == "VideosDGXSkyReelsTalkingAvatar"]
    avatar = workflow[avatar_id]["inputs"]
    assert (avatar["steps"], avatar["shift"], avatar["cfg"], avatar["cfg_audio"], avatar["motion_frames"]) == (
        variant.steps, variant.shift, variant.guidance, variant.guidance_audio, variant.motion_frames)
    assert workflow[avatar["audio"][0]]["class_type"] == "LoadAudio"
    [create] = [n["inputs"] for n in workflow.values() if n["class_type"] == "CreateVideo"]
    assert create["fps"] == variant.fps and create["audio"] == [avatar_id, 1]
    texts = {n["_meta"]["title"]: n["inputs"] for n in workflow.values() if n["class_type"] == "VideosDGXWanTextEncode"}
    assert texts["Connection Prompt"]["prompt"] == "a person is talking"
    assert texts["Prompt"]["negative_prompt"] == variant.negative_prompt
    used = {value for n in workflow.values() for key, value in n["inputs"].items()
            if key in MODEL_INPUTS + ("clip_name", "audio_encoder_name")}
    assert used == {entry.filename for entry in load_manifest().bundle_entries(name)}
    plan = plan_overrides(workflow, Overrides(prompt="p", seed=1, steps=2, width=64, height=48, frames=9,
                                              image=Path("x.png"), audio=Path("x.wav")))
    assert {(workflow[a.node_id]["class_type"], a.input) for a in plan} == {
        ("VideosDGXWanTextEncode", "prompt"), ("LoadImage", "image"), ("LoadAudio", "audio"),
        *{("VideosDGXSkyReelsTalkingAvatar", key) for key in ("seed", "steps", "width", "height", "length")}}
