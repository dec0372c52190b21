"""MAGI-1 chunk sampler vs the official SampleTransport (tests/reference/magi1/pipeline.safetensors), and its
schedules vs the values the reference computes."""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videosdgx.magi1.sampler import Captions, ChunkSampler, SamplerSettings
from videosdgx.magi1.schedule import guidance_scales, time_schedule, window_stages
from videosdgx.magi1.special_tokens import SpecialTokens, chunk_captions
from videosdgx.magi1.transformer import MagiDiT
from videosdgx.testing.magi1 import dit_state, pipeline_inputs, special_tokens_arrays, tiny_dit_config

REFERENCE = Path(__file__).parent / "reference" / "magi1" / "pipeline.safetensors"
CASES = {"pipeline_base": (False, 0), "pipeline_distill": (True, 0), "pipeline_distill_i2v": (True, 1),
         "pipeline_base_v2v": (False, 3)}


def run_tiny(distill: bool, prefix_frames: int) -> torch.Tensor:
    cfg = tiny_dit_config("4.5B")
    model = MagiDiT(cfg)
    model.load_state_dict(dit_state(cfg))
    inp = pipeline_inputs(prefix_frames)
    cw = 2
    chunks = math.ceil((16 // 4 + prefix_frames) / cw)
    clean = prefix_frames // cw
    tokens = SpecialTokens(torch.from_numpy(special_tokens_arrays()["other_tokens"]).half().float())
    null = model.y_embedder.null_caption_embedding.detach()
    prompt = (inp["caption"][0, 0], inp["mask"][0])
    cond, mask = chunk_captions([prompt] * (chunks - clean), tokens, clean, null)
    noise = torch.randn(1, 16, chunks * cw, 8, 8, generator=torch.Generator().manual_seed(inp["seed"]))
    settings = SamplerSettings(steps=8, distill=distill, chunk_width=cw)
    sampler = ChunkSampler(model, settings, Captions(cond, mask, null), noise, prefix=inp["prefix"])
    with torch.no_grad():
        return torch.cat([latent for _, latent in sampler.run()], dim=2)


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_matches_official(name):
    ref = load_file(REFERENCE)[name]
    out = run_tiny(*CASES[name])
    assert out.shape == ref.shape
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-3


def test_schedules():
    t = time_schedule(64)
    assert t[48].item() == pytest.approx(0.3) and t[48].item() > 0.3  # float32, as the reference
    scales = (0, 0.0217, 0.1, 0.3, 0.999), (1.5, 1.5, 1.5, 1.0, 1.0), (7.5, 7.5, 7.5, 0, 0)
    assert guidance_scales(t[47].item(), *scales) == (1.5, 7.5)  # text + previous-chunk guidance: 48 steps
    assert guidance_scales(t[48].item(), *scales) == (1.0, 0)
    stages = window_stages(4, 4)
    assert [s.first for s in stages] == [0, 0, 0, 0, 1, 2, 3] and [s.end for s in stages] == [1, 2, 3, 4, 4, 4, 4]


def test_cache_stays_bounded_as_chunks_go_by():
    cfg = tiny_dit_config("4.5B")
    model = MagiDiT(cfg)
    model.load_state_dict(dit_state(cfg))
    null = model.y_embedder.null_caption_embedding.detach()
    chunks = 8
    cond, mask = torch.randn(chunks, 800, 32), torch.ones(chunks, 800)
    noise = torch.randn(1, 16, 2 * chunks, 8, 8, generator=torch.Generator().manual_seed(0))
    sampler = ChunkSampler(model, SamplerSettings(steps=4, distill=True, chunk_width=2), Captions(cond, mask, null),
                           noise)
    held = []
    progress = lambda done, total: held.append(max(len(c) for c in sampler.cache._chunks.values()) if  # noqa: E731
                                               sampler.cache._chunks else 0)
    with torch.no_grad():
        emitted = [index for index, _ in sampler.run(progress)]
    assert emitted == list(range(chunks)) and len(held) == sampler.total_steps() == chunks + 3
    assert max(held) == 4  # the widest key range (5 chunks) minus the chunk itself, however long the video
