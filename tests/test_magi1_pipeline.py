"""MAGI-1 pipeline on tiny files in the official layouts: loading by manifest role, T2V / I2V / V2V, per-chunk
prompts and emission, refusals before loading."""

from pathlib import Path

import pytest
import torch

from videosdgx.bundle_files import find_bundle_files
from videosdgx.install.comfyui import ModelFolders
from videosdgx.job import VideoRequest
from videosdgx.magi1.pipeline import load_magi1_pipeline
from videosdgx.magi1.variants import MAGI1_VARIANTS
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.magi1 import write_magi1_bundle

SMALL = dict(width=64, height=64, frames=48, steps=8)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    models = write_magi1_bundle("magi-1-4.5b-distill", tmp_path_factory.mktemp("models"))
    files = find_bundle_files("magi-1-4.5b-distill", ModelFolders(models))
    return load_magi1_pipeline(MAGI1_VARIANTS["magi-1-4.5b-distill"], files, LoadRequest(), low_memory=True)


def test_t2v_chunks_are_reported_as_they_finish(pipeline):
    seen, stages = [], []
    result = pipeline.generate(VideoRequest(prompt="a red fox", prompts=("a red fox", "a cat sits on a boat"),
                                            **SMALL), progress=lambda stage, done, total: stages.append(stage),
                               on_chunk=lambda index, frames: seen.append((index, frames.shape[0], len(stages))))
    assert result.frames.shape == (48, 64, 64, 3) and result.fps == 24
    assert 0 <= result.frames.min() and result.frames.max() <= 1
    assert [s[:2] for s in seen] == [(0, 24), (1, 24)]
    assert seen[0][2] < len(stages)  # the first chunk came out while sampling went on
    assert stages.count("sampling") == 2 * (2 + 4 - 1)


def test_i2v_and_v2v(pipeline):
    image = torch.rand(1, 48, 80, 3)
    i2v = pipeline.generate(VideoRequest(prompt="a red fox", image=image, **SMALL))
    assert i2v.frames.shape[0] == 48 + 24  # the image latent joins chunk 0: 13 latent frames -> 3 chunks
    video = torch.rand(40, 64, 64, 3)
    v2v = pipeline.generate(VideoRequest(prompt="a red fox", video=video, **SMALL))
    # 8 prefix + 12 new latent frames = 4 chunks; chunk 0 is prefix, chunk 1 emits its 4 new latent frames
    # (tiles of 3 + 1 latent frames decode to 12 + 1 frames, as the reference), chunks 2 and 3 24 frames each
    assert v2v.frames.shape[0] == 13 + 24 + 24


def test_video_is_resampled_to_the_model_rate():
    from videosdgx.magi1.pipeline import resample_frames

    frames = torch.arange(12.0)[:, None, None, None]
    assert resample_frames(frames, 12, 24)[:, 0, 0, 0].tolist() == [k // 2 for k in range(24)]
    assert resample_frames(frames, 48, 24)[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8, 10]
    assert resample_frames(frames, 24, 24) is frames


@pytest.mark.parametrize("change,message", [
    (dict(steps=10), "divisible by 4"),
    (dict(width=70), "multiple of 16"),
    (dict(options={"guidance_passes": 3}), "runs 1 guidance pass"),
])
def test_impossible_settings_are_refused_before_loading(change, message):
    variant = MAGI1_VARIANTS["magi-1-4.5b-distill"]
    with pytest.raises(ConfigurationError, match=message):
        variant.check(VideoRequest(prompt="x", **{**SMALL, **change}))


def test_registry_hooks(tmp_path):
    from videosdgx.families import family

    row = family("magi1")
    assert row.variant_table()["magi-1-4.5b-base"].guidance_passes == 3
    row.hook("demo")("magi-1-4.5b-base", tmp_path)
    files = find_bundle_files("magi-1-4.5b-base", ModelFolders(tmp_path))
    assert row.hook("pipeline") is load_magi1_pipeline and len(files.all("dit")) == 2


def test_generate_command_refuses_before_loading(tmp_path):
    import argparse

    from videosdgx.generate import add_generate_arguments
    from videosdgx.request import RequestError, check_job

    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    args = parser.parse_args(["--model", "magi-1-4.5b-base", "--prompt", "a fox", "--prompt", "then a cat",
                              "--out", str(tmp_path / "x.mp4"), "--steps", "10"])
    with pytest.raises(RequestError, match="divisible by 4"):
        check_job(args)


def test_generate_on_a_server_picks_the_continuation_workflow(tmp_path):
    """`generate --video --server` runs the shipped V2V workflow; per-chunk prompts become its prompt lines."""
    import argparse
    import json

    from videosdgx.client.overrides import apply_assignments, plan_overrides
    from videosdgx.generate import add_generate_arguments
    from videosdgx.media import write_video
    from videosdgx.request import check_job, server_overrides

    write_video(tmp_path / "in.mp4", torch.rand(8, 32, 32, 3), 24)
    parser = argparse.ArgumentParser()
    add_generate_arguments(parser)
    common = ["--model", "magi-1-4.5b-distill", "--prompt", "a fox", "--prompt", "then a cat", "--frames", "48",
              "--out", str(tmp_path / "x.mp4"), "--server", "http://127.0.0.1:8188"]
    variant = MAGI1_VARIANTS["magi-1-4.5b-distill"]
    assert variant.workflow_for(set()) == "magi-1-4.5b-distill"
    assert variant.workflow_for({"image"}) == "magi-1-4.5b-distill-i2v"
    args = parser.parse_args([*common, "--video", str(tmp_path / "in.mp4")])
    job = check_job(args)
    name = job.variant.workflow_for(job.request.given_inputs())
    assert name == "magi-1-4.5b-distill-v2v"
    workflow = json.loads((Path(__file__).parent.parent / "workflows" / "api" / f"{name}.json").read_text())
    overrides = server_overrides(job, args, workflow, name)
    prompt = apply_assignments(workflow, plan_overrides(workflow, overrides))
    nodes = {node["_meta"]["title"]: node["inputs"] for node in prompt.values()}
    assert nodes["Prompt"]["prompt"] == "a fox\nthen a cat" and nodes["Video Size"]["length"] == job.request.frames
    assert nodes["Input Video"]["file"].path == tmp_path / "in.mp4"  # uploaded by the client before the run
