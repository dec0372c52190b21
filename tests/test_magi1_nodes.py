"""The MAGI-1 nodes in the ComfyUI stand-in on tiny files in the official layouts: the chain, per-step progress,
Cancel between steps, validation of files before the run."""

from __future__ import annotations

import pytest
import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.testing.magi1 import write_magi1_bundle

SHARD = "magi1_4.5B_distill/model-00001-of-00002.safetensors"


@pytest.fixture(scope="module")
def comfy(comfy_pack, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfyui")
    write_magi1_bundle("magi-1-4.5b-distill", base / "models")
    comfy_pack.folder_paths.set_base(base)
    return comfy_pack


def run(comfy, node_id: str, **inputs):
    return comfy.nodes[node_id].execute(**inputs).args


def chain(comfy):
    model, = run(comfy, "VideosDGXMagiModelLoader", model_name=SHARD, variant="magi-1-4.5b-distill",
                 weight_dtype="fp32")
    text, = run(comfy, "VideosDGXMagiTextEncoderLoader", text_encoder_name="t5-v1_1-xxl/pytorch_model-00001-of-00002.bin")
    vae, = run(comfy, "VideosDGXMagiVAELoader", vae_name="magi1_vae/diffusion_pytorch_model.safetensors")
    conditioning, = run(comfy, "VideosDGXMagiTextEncode", text_encoder=text, prompt="a red fox\n\na cat on a boat\n")
    return model, conditioning, vae


def test_chain_makes_chunks_with_progress_and_cancel(comfy):
    model, conditioning, vae = chain(comfy)
    assert conditioning.prompts == ("a red fox", "a cat on a boat")
    comfy.utils.updates.clear()
    settings = dict(model=model, conditioning=conditioning, vae=vae, width=32, height=32, length=48, steps=4, seed=3)
    images, = run(comfy, "VideosDGXMagiChunkSampler", **settings)
    assert images.shape == (48, 32, 32, 3) and 0 <= images.min() and images.max() <= 1
    assert [u[1:] for u in comfy.utils.updates[-5:]] == [(i, 5) for i in range(1, 6)]  # 1 step x (2 + 4 - 1)

    calls = []

    def press_cancel(*_):
        calls.append(1)
        comfy.model_management.interrupt_current_processing(True)

    hook = model.dit.register_forward_hook(press_cancel)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run(comfy, "VideosDGXMagiChunkSampler", **settings)
    finally:
        hook.remove()
        comfy.model_management.interrupt_current_processing(False)
    assert len(calls) == 1  # stopped before the second step


def test_video_is_continued_at_its_frame_rate(comfy):
    """GetVideoComponents' fps reaches the sampler: 16 frames at 12 fps are the 32 prefix frames of 24 fps."""
    model, conditioning, vae = chain(comfy)
    video = torch.rand(16, 40, 48, 3, generator=torch.Generator().manual_seed(0))
    settings = dict(model=model, conditioning=conditioning, vae=vae, width=32, height=32, length=20, steps=4, seed=3)
    images, = run(comfy, "VideosDGXMagiChunkSampler", video=video, video_fps=12.0, **settings)
    # 8 prefix + 5 new latent frames = 3 chunks; chunk 1 emits its 4 new latent frames (13 frames), chunk 2 all 24
    assert images.shape == (13 + 24, 32, 32, 3)
    for fps in (0.0, float("nan")):
        with pytest.raises(ConfigurationError, match="positive number of frames per second"):
            run(comfy, "VideosDGXMagiChunkSampler", video=video, video_fps=fps, **settings)


def test_loaders_validate_before_the_run(comfy):
    check = comfy.nodes["VideosDGXMagiModelLoader"].validate_inputs
    assert check(model_name=SHARD, variant="magi-1-4.5b-distill") is True
    assert "not one of" in check(model_name=SHARD, variant="magi-2")
    assert "is not in diffusion_models" in check(model_name="nope.safetensors", variant="magi-1-4.5b-distill")
    model, conditioning, vae = chain(comfy)
    with pytest.raises(Exception, match="divisible by 4"):
        run(comfy, "VideosDGXMagiChunkSampler", model=model, conditioning=conditioning, vae=vae, width=32, height=32,
            length=24, steps=6, seed=0)


def test_schemas(comfy):
    magi = {node_id: node for node_id, node in comfy.nodes.items() if node_id.startswith("VideosDGXMagi")}
    assert len(magi) == 5
    for node in magi.values():
        info = node.GET_SCHEMA().get_v1_info(node)
        assert info["category"] == "VideosDGX/MAGI-1"
        assert info["display_name"].startswith("MAGI-1 ") and info["display_name"].endswith(" (VideosDGX)")
        for group in ("required", "optional"):
            for name, (kind, options) in info["input"].get(group, {}).items():
                if kind == "INT":
                    assert options["min"] <= options["default"] <= options["max"], (info["name"], name)
                if name == "seed":
                    assert options["control_after_generate"] is True and options["max"] == 2**64 - 1


def test_sampler_checks_its_peak_before_sampling(comfy, monkeypatch):
    from videosdgx.runtime.errors import InsufficientMemoryError
    from videosdgx.runtime.memory import GB, MemoryStatus

    model, conditioning, vae = chain(comfy)
    monkeypatch.setattr("videosdgx.runtime.memory.memory_status",
                        lambda device: MemoryStatus(device, None, None, 1024, GB, unified=False))
    with pytest.raises(InsufficientMemoryError, match=r"MAGI-1 sampling of 32x32, 48 frames needs"):
        run(comfy, "VideosDGXMagiChunkSampler", model=model, conditioning=conditioning, vae=vae, width=32, height=32,
            length=48, steps=4, seed=3)
