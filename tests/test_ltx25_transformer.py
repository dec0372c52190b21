"""LTX-2.5 DiT options vs diffusers `LTX2VideoTransformer3DModel` (`ff_bias=False`, `use_prompt_adaln_single=False`,
`use_keyframes_abs_pos_embedding=True`): configuration from the file, the keyframe marker, cached text K/V."""

from __future__ import annotations

import pytest
import torch
from diffusers import LTX2VideoTransformer3DModel

from tests.test_ltx2_transformer import diffusers_twin, inputs, rel, run_reference
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.rope import audio_positions, video_positions
from videosdgx.ltx2.transformer import LTX2Model, Modality
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import WrongComponentError
from videosdgx.runtime.identify import identify
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.ltx2 import write_ltx2_checkpoint
from videosdgx.testing.ltx25 import tiny_dit25_config

F32 = LoadRequest(dtype=torch.float32)
FRAMES, HEIGHT, WIDTH, AUDIO_FRAMES, FPS = 3, 2, 3, 7, 24.0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Ours from a split 2.5 transformer file (no `model.diffusion_model.` prefix), diffusers' twin with its weights."""
    cfg = tiny_dit25_config()
    path = write_ltx2_checkpoint(tmp_path_factory.mktemp("ltx25") / "dit.safetensors", cfg, seed=4,
                                 prefixed=False, dtype=torch.float32)
    ours = load_dit(path, F32, expected_version="2.5").module
    with open_checkpoint(path) as checkpoint:
        weights = {to_diffusers_key(k): checkpoint.get(k).clone() for k in checkpoint.keys()}
        identity = identify(checkpoint)
    reference = LTX2VideoTransformer3DModel(**{**diffusers_twin(cfg).config, "ff_bias": False,
                                               "use_prompt_adaln_single": False,
                                               "use_keyframes_abs_pos_embedding": True}).eval()
    reference.load_state_dict(weights, strict=True)
    return ours, reference, cfg, identity


def run(model: LTX2Model, x: dict, keyframes: torch.Tensor | None = None):
    video = Modality(x["video"], x["timesteps"], x["sigma"], video_positions(FRAMES, HEIGHT, WIDTH, FPS, 2),
                     x["video_context"], keyframes=keyframes)
    audio = Modality(x["audio"], x["audio_timesteps"], x["audio_sigma"], audio_positions(AUDIO_FRAMES, 2),
                     x["audio_context"])
    with torch.no_grad():
        return model(video, audio)


def test_config_and_identity_from_the_file(models):
    ours, _, cfg, identity = models
    assert ours.cfg == cfg and cfg.version == "2.5"
    assert identity.variant.startswith("LTX-2.5") and not hasattr(ours, "prompt_adaln_single")
    block = ours.transformer_blocks[0]
    assert block.ff.net[2].bias is None and block.audio_ff.net[2].bias is not None


@pytest.mark.parametrize("i2v", [False, True], ids=["t2v", "i2v"])
def test_parity_with_diffusers_and_keyframe_marker(models, i2v):
    ours, reference, cfg, _ = models
    ours.cross_timestep = "cross"
    x = inputs(cfg, i2v)
    keyframes = torch.zeros(2, FRAMES * HEIGHT * WIDTH)
    keyframes[:, : HEIGHT * WIDTH] = 1.0  # the first latent frame marked
    for marker in (None, keyframes):
        video, audio = run(ours, x, marker)
        mask = None if marker is None else marker[..., None]
        ref_video, ref_audio = run_reference(reference, x, use_cross_timestep=True, video_keyframes_mask=mask)
        assert rel(video, ref_video) < 1e-4 and rel(audio, ref_audio) < 1e-4
    assert rel(run(ours, x)[0], video) > 1e-3  # the marker changes the output


def test_cached_text_keys_values_give_the_same_result(models):
    ours, _, cfg, _ = models
    x = inputs(cfg, i2v=False)
    plain = run(ours, x)
    ours.text_kv_cache = True
    try:
        first = run(ours, x)
        x["sigma"] = x["sigma"] * 0.5  # another step, same context tensors: the cache is used
        x["timesteps"] = x["timesteps"] * 0.5
        second = run(ours, x)
        assert {len(cache) for _, cache in ours._text_cache.values()} == {len(ours.transformer_blocks)}
        ours.text_kv_cache = False
        fresh = run(ours, x)
    finally:
        ours.text_kv_cache = False
        ours.clear_text_cache()
    assert torch.equal(first[0], plain[0]) and torch.equal(second[0], fresh[0]) and torch.equal(second[1], fresh[1])


def test_2_5_file_for_a_2_3_variant_is_refused(tmp_path):
    path = write_ltx2_checkpoint(tmp_path / "dit.safetensors", tiny_dit25_config(), prefixed=False)
    with pytest.raises(WrongComponentError, match="is an LTX-2.5 22B checkpoint, but the x variant needs LTX-2.3"):
        load_dit(path, F32, expected_version="2.3", variant="x")
