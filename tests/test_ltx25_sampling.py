"""LTX-2.5 duration head vs diffusers `LTX2DurationHead` (and its frame-count rule), Euler-ancestral stepping vs
diffusers `LTXEulerAncestralRFScheduler`."""

from __future__ import annotations

import pytest
import torch
from diffusers import LTXEulerAncestralRFScheduler
from diffusers.pipelines.ltx2.duration_head import LTX2DurationHead

from videosdgx.ltx2.duration_head25 import load_duration_head, seconds_to_frames
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import WrongComponentError
from videosdgx.runtime.identify import identify
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.ancestral import EulerAncestralSolver
from videosdgx.testing.ltx25 import write_duration_head


def diffusers_duration_head(path) -> LTX2DurationHead:
    """diffusers' twin with the file's weights (its attention in to_q / to_k / to_v / to_out)."""
    with open_checkpoint(path) as checkpoint:
        state = {k.removeprefix("duration_head."): checkpoint.get(k).clone() for k in checkpoint.keys()}
    pooler = "attention_pooler."
    for name, part in zip(("to_q", "to_k", "to_v"), state.pop(pooler + "cross_attn.in_proj_weight").chunk(3)):
        state[f"{pooler}{name}.weight"] = part
    for name, part in zip(("to_q", "to_k", "to_v"), state.pop(pooler + "cross_attn.in_proj_bias").chunk(3)):
        state[f"{pooler}{name}.bias"] = part
    for suffix in ("weight", "bias"):
        state[f"{pooler}to_out.{suffix}"] = state.pop(f"{pooler}cross_attn.out_proj.{suffix}")
    model = LTX2DurationHead(video_cross_attention_dim=24, audio_cross_attention_dim=12, pooler_hidden_dim=16,
                             num_queries=2, num_pooler_heads=4, mlp_hidden_dim=12).eval()
    model.load_state_dict(state, strict=True)
    return model


def test_duration_head_matches_diffusers(tmp_path):
    path = write_duration_head(tmp_path / "ltx-2.5-duration-head.safetensors", video_dim=24, audio_dim=12)
    with open_checkpoint(path) as checkpoint:
        assert (identify(checkpoint).family, identify(checkpoint).component) == ("ltx2", "duration head")
    ours = load_duration_head(path, LoadRequest()).module
    reference = diffusers_duration_head(path)
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(2, 9, 24, generator=g), torch.randn(2, 9, 12, generator=g)
    with torch.no_grad():
        for args in ((video, audio), (video, None), (None, audio)):
            got, ref = ours(*args), reference(*args)
            assert got.shape == (2,) and ((got - ref).abs().max() / ref.abs().max()).item() < 1e-5
        one = (video[:1], audio[:1])
        assert ours.predict_frames(*one, fps=24.0) == reference.predict_num_frames(
            *one, frame_rate=24.0, temporal_compression_ratio=8)


@pytest.mark.parametrize("seconds", [0.2, 1.0, 3.14, 5.0, 40.0])
def test_frame_count_rule_matches_diffusers(seconds):
    head = LTX2DurationHead(video_cross_attention_dim=4, audio_cross_attention_dim=4, pooler_hidden_dim=4,
                            num_pooler_heads=1, mlp_hidden_dim=4)
    head.forward = lambda *a, **k: torch.tensor([seconds])
    for fps in (24.0, 25.0):
        assert seconds_to_frames(seconds, fps) == head.predict_num_frames(
            torch.zeros(1, 1, 4), frame_rate=fps, temporal_compression_ratio=8)


def test_duration_head_loader_refuses_other_files(tmp_path):
    from videosdgx.testing.ltx25 import write_ltx25_text_encoder

    path = write_ltx25_text_encoder(tmp_path / "te.safetensors")
    with pytest.raises(WrongComponentError, match="not a LTX-2 duration head"):
        load_duration_head(path, LoadRequest())


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_euler_ancestral_matches_diffusers(eta):
    sigmas = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0]
    scheduler = LTXEulerAncestralRFScheduler(eta=eta)
    scheduler.set_timesteps(sigmas=sigmas)
    ours = EulerAncestralSolver(torch.tensor(sigmas), eta=eta, generator=torch.Generator().manual_seed(7))
    g_ref = torch.Generator().manual_seed(7)
    x = ref = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(1))
    for i, t in enumerate(scheduler.timesteps[:-1]):  # the terminal 0 is part of its schedule
        velocity = torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + i))
        x = ours.step(x, velocity, i)
        ref = scheduler.step(velocity, t, ref, generator=g_ref, return_dict=False)[0]
        assert ((x - ref).abs().max() / ref.abs().max()).item() < 1e-5
