"""SkyReels V3 V2V: the DiT with per-frame timesteps against diffusers' SkyReels-V2 diffusion-forcing model, the
shot-switching list input, the extension forward and the chunk chaining against the official modules' outputs
(tests/reference/skyreels_v3, see its README), the nearest resize, the pipeline on fixtures, and bad input."""

import sys
from pathlib import Path

import pytest
import torch
from diffusers import SkyReelsV2Transformer3DModel
from safetensors.torch import load_file

from videosdgx.job import VideoRequest
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.skyreels_v3.loaders import load_skyreels_dit
from videosdgx.skyreels_v3.pipeline import check_request, load_skyreels_pipeline
from videosdgx.skyreels_v3.v2v import chunk_latent_frames, extend_single_shot, extension_sigmas, resize_nearest
from videosdgx.skyreels_v3.variants import skyreels_variant
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.skyreels_v3 import seeded_weights, write_skyreels_bundle
from videosdgx.wan.conditioning import TextConditioning
from videosdgx.wan.keys import from_diffusers_key
from videosdgx.wan.pipeline import decode_frames
from videosdgx.wan.transformer import WanConfig, WanModel
from videosdgx.wan.vae import WanVAE21, WanVAE21Config

REFERENCE = Path(__file__).parent / "reference" / "skyreels_v3"
sys.path.insert(0, str(REFERENCE))
import tiny  # noqa: E402

V2V = skyreels_variant("skyreels-v3-v2v-14b")


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope="module")
def reference():
    return load_file(str(REFERENCE / "v2v.safetensors"))


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    """Our DiT, loaded by the V2V loader from a file with the reference weights (official keys)."""
    cfg = WanConfig(dim=256, ffn_dim=192, num_heads=2, num_layers=2, in_dim=16, out_dim=16, text_dim=tiny.TEXT_DIM,
                    freq_dim=64)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanModel(cfg).state_dict().items()}
    path = save_safetensors(tmp_path_factory.mktemp("v2v") / "v2v.safetensors", seeded_weights(shapes, tiny.DIT_SEED))
    model = load_skyreels_dit("v2v", path, LoadRequest()).module.eval()
    assert model.cfg.rope_max_positions == 2048 and model.cfg.rope_fp32
    return model


def test_shot_switching_list_input_matches_official(dit, reference):
    """Context latents appended after the noisy ones, RoPE time from 1024, timestep 0 on the context."""
    with torch.no_grad():
        got = dit(reference["noisy"], reference["t_shot"], reference["text"][None],
                  context_latents=[reference["context_latent"]])
    assert got.shape == reference["shot_out"].shape
    assert relative_error(got, reference["shot_out"]) <= 1e-4
    with torch.no_grad():  # the offset matters: the same tokens at positions 3.. give another result
        dit.cfg.__dict__["context_rope_start"] = 3
        shifted = dit(reference["noisy"], reference["t_shot"], reference["text"][None],
                      context_latents=[reference["context_latent"]])
        dit.cfg.__dict__["context_rope_start"] = 1024
    assert relative_error(shifted, reference["shot_out"]) > 1e-3


def test_extension_forward_with_clean_prefix_matches_official(dit, reference):
    x = torch.cat([reference["context_latent"], reference["noisy"]], dim=2)
    with torch.no_grad():
        got = dit(x, reference["t_extension"], reference["text"][None])
    assert relative_error(got, reference["extension_out"]) <= 1e-4


def test_per_frame_timesteps_match_diffusers_diffusion_forcing():
    torch.manual_seed(0)
    ref = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=32, in_channels=16, out_channels=16,
        text_dim=40, freq_dim=32, ffn_dim=80, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-6, rope_max_seq_len=1024,
    ).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in ref.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1 + 0.2 * noise if "norm" in name and name.endswith("weight") else
                        noise / param[0].numel() ** 0.5 if param.ndim >= 2 else 0.3 * noise)
    cfg = WanConfig(dim=96, ffn_dim=80, num_heads=3, num_layers=3, in_dim=16, out_dim=16, text_dim=40, freq_dim=32)
    with torch.device("meta"):
        ours = WanModel(cfg)
    ours.load_state_dict({from_diffusers_key(k): v for k, v in ref.state_dict().items()}, strict=True, assign=True)
    x = torch.randn(2, 16, 4, 4, 6, generator=generator)
    t = torch.tensor([[0.0, 0.0, 500.0, 999.0], [250.0, 0.0, 13.0, 750.0]])
    text = torch.randn(2, 7, 40, generator=generator)
    with torch.no_grad():
        expected = ref(x, t, torch.cat([text, text.new_zeros(2, 505, 40)], dim=1), enable_diffusion_forcing=True,
                       return_dict=False)[0]
        got = ours.eval()(x, t, text)
        same = ours(x, torch.full((2, 4), 500.0), text), ours(x, torch.full((2,), 500.0), text)
    assert relative_error(got, expected) <= 1e-5
    assert relative_error(*same) <= 1e-6  # equal per-frame timesteps = one scalar timestep


def test_chunk_lengths_carry_the_padding():
    assert chunk_latent_frames(6, 7) == [33, 9]
    assert chunk_latent_frames(30, 7) == [33, 33, 25, 33, 33, 25]
    assert chunk_latent_frames(1, 7) == [9]
    assert all((n + 7) % 8 == 0 for n in chunk_latent_frames(17, 7))


def test_input_video_resize_is_nearest_as_official(reference):
    frames = reference["video_uint8"].float() / 255
    got = resize_nearest(frames, 16, 32)[-25:] * 2 - 1
    assert torch.allclose(got.permute(3, 0, 1, 2)[None], reference["prefix_pixels"], atol=1e-6)


def test_chunk_chaining_matches_official(dit, reference):
    """Two chunks (5 s + 1 s: 33 + 9 latent frames), each decoded with its prefix, 8-bit frames in between."""
    config = WanVAE21Config(dim=tiny.VAE_DIM, latents_mean=tuple(tiny.LATENTS_MEAN), latents_std=tuple(tiny.LATENTS_STD))
    vae = WanVAE21(config).eval()
    shapes = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    vae.load_state_dict(seeded_weights(shapes, tiny.VAE_SEED), strict=True)
    video = resize_nearest(reference["video_uint8"].float() / 255, 16, 32)

    def encode(frames):
        with torch.no_grad():
            return vae.encode(frames.permute(3, 0, 1, 2)[None] * 2 - 1)

    text = TextConditioning(reference["text"], reference["text"][:0])
    got = extend_single_shot(dit, text, video, tiny.EXTENSION_SECONDS, encode, lambda z: decode_frames(vae, z),
                             extension_sigmas(8, 8.0), tiny.SEED)
    expected = reference["extension_frames"].float() / 255
    assert got.shape == expected.shape == (4 * (33 + 9), 16, 32, 3)
    assert expected.std() > 0.05
    assert (got - expected).abs().max().item() <= 1.01 / 255  # 8-bit truncation may flip on float noise


def test_pipeline_on_fixture_files(tmp_path):
    files = write_skyreels_bundle("skyreels-v3-v2v-14b", tmp_path)
    pipe = load_skyreels_pipeline(V2V, files, LoadRequest())
    video = torch.rand(26, 30, 40, 3, generator=torch.Generator().manual_seed(2))
    extended = pipe.generate(VideoRequest(prompt="the cat walks on", video=video, steps=1, width=32, height=32,
                                          options={"duration": 1}))
    shot = pipe.generate(VideoRequest(prompt="[ZOOM_IN_CUT] the cat's face", video=video, steps=1, width=32,
                                      height=32, options={"duration": 2, "mode": "shot"}))
    assert extended.frames.shape == (36, 32, 32, 3) and extended.fps == 24
    assert shot.frames.shape == (49, 32, 32, 3)


@pytest.mark.parametrize("frames, options, message", [
    (24, {}, "has 24 frames; SkyReels V3 extension needs at least 25"),
    (30, {"mode": "shot", "duration": 5}, "5-second shot switch needs at least 33"),
    (30, {"mode": "shot", "duration": 6}, "lasts 2, 3, 4 or 5 seconds, got 6"),
    (30, {"duration": 31}, "extends a video by 1 to 30 seconds, got 31"),
    (30, {"mode": "loop"}, "Unknown SkyReels V3 V2V mode 'loop'"),
])
def test_bad_video_requests_are_refused_before_loading(frames, options, message):
    request = VideoRequest(prompt="x", video=torch.rand(frames, 8, 8, 3), options=options)
    with pytest.raises(ConfigurationError, match=message):
        check_request(V2V, request)


def test_missing_video_is_refused():
    with pytest.raises(ConfigurationError, match="continues a video: give one"):
        check_request(V2V, VideoRequest(prompt="x"))
