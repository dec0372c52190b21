"""LTX-2.5's diffusion video decoder: the release's raw layout (fused qkv, unfolded gates, coarse head, nested
header config) and diffusers' layout load through the real loader, and decode like diffusers'
`LTX2VideoDiffusionDecoderModel` on the same weights and noise; the windowed neighbourhood attention equals the
dense-mask one."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from videosdgx.ltx2.media_loaders import load_diffusion_decoder, load_video_vae
from videosdgx.ltx2.neighborhood import neighborhood_attention, window_starts
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import WrongComponentError
from videosdgx.runtime.identify import identify
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.ltx25_decoder import TINY_DECODER, diffusers_decoder, write_diffusion_vae
from videosdgx.testing.ltx2_media import video_vae_state

F32 = LoadRequest(dtype=torch.float32)
LATENT = (1, 8, 3, 2, 3)  # every stage's window cuts its grid (see TINY_DECODER)
CONFIGS = {
    "v-2-steps": TINY_DECODER,
    "x0-1-step": dataclasses.replace(TINY_DECODER, prediction="x0", steps=1, timestep_scale=1000.0),
    "x0-3-steps": dataclasses.replace(TINY_DECODER, prediction="x0", steps=3, timestep_scale=1000.0),
}


@pytest.fixture(autouse=True)
def eager_flex(monkeypatch):
    """diffusers' default processor runs torch's flex attention; eager here (compiling it on CPU takes minutes)."""
    import torch.nn.attention.flex_attention as flex

    monkeypatch.setattr(flex, "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG", True, raising=False)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", CONFIGS)
def test_raw_release_file_decodes_like_diffusers(tmp_path, name):
    cfg = CONFIGS[name]
    path = write_diffusion_vae(tmp_path / "ltx-2.5-video-vae-bf16.safetensors", cfg)
    ours = load_diffusion_decoder(path, F32).module
    assert ours.config == cfg  # the nested header config and the shapes
    reference = diffusers_decoder(cfg, ours.state_dict())
    latents = torch.randn(LATENT, generator=torch.Generator().manual_seed(1))
    got = ours.decode(latents, torch.Generator().manual_seed(2))
    mean, std = (t.view(1, -1, 1, 1, 1) for t in (ours.latents_mean, ours.latents_std))
    with torch.no_grad():  # diffusers' decoder takes un-normalised latents
        expected = reference.decode(latents * std + mean, generator=torch.Generator().manual_seed(2)).sample
    assert got.shape == expected.shape == (1, 3, 17, 16, 24)
    error = relative(got, expected)
    print(f"{name}: max relative error {error:.2e}")
    assert error <= 1e-4


def test_diffusers_and_bare_layouts_load_the_same_weights(tmp_path):
    raw = load_diffusion_decoder(write_diffusion_vae(tmp_path / "raw.safetensors"), F32).module
    bare = load_diffusion_decoder(write_diffusion_vae(tmp_path / "bare" / "vae.safetensors", prefixed=False),
                                  F32).module
    cfg = dataclasses.replace(TINY_DECODER, prediction="x0", steps=1, timestep_scale=1000.0)
    diffusers_decoder(cfg, raw.state_dict()).save_pretrained(tmp_path / "diffusers")
    saved = tmp_path / "diffusers" / "diffusion_pytorch_model.safetensors"
    converted = load_diffusion_decoder(saved, F32).module
    assert converted.config == cfg  # from its config.json
    for other in (bare, converted):
        assert other.state_dict().keys() == raw.state_dict().keys()
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in raw.state_dict().items())
    with open_checkpoint(saved) as checkpoint:
        assert identify(checkpoint).layout == "diffusers"


def test_identified_and_wrong_files_refused(tmp_path):
    path = write_diffusion_vae(tmp_path / "ltx-2.5-video-vae-bf16.safetensors")
    with open_checkpoint(path) as checkpoint:
        identity = identify(checkpoint)
    assert (identity.family, identity.component, identity.layout) == ("ltx2", "diffusion video decoder", "official")
    assert identity.notes == ("contains the video encoder too",)
    conv = save_safetensors(tmp_path / "conv.safetensors", video_vae_state("2.3", 0, 8))
    with pytest.raises(WrongComponentError, match="video VAE"):
        load_diffusion_decoder(conv, F32)
    with pytest.raises(WrongComponentError, match="diffusion video decoder"):
        load_video_vae(path, F32)


def test_small_latents_are_padded_and_cropped_back(tmp_path):
    decoder = load_diffusion_decoder(write_diffusion_vae(tmp_path / "vae.safetensors"), F32).module
    one = torch.randn(1, 8, 1, 1, 1)
    image = decoder.decode(one, torch.Generator().manual_seed(0))
    assert image.shape == (1, 3, 1, 8, 8) and torch.isfinite(image).all()
    assert torch.equal(image, decoder.decode(one, torch.Generator().manual_seed(0)))


def test_a_clip_shorter_than_the_window_repeats_its_last_noise_frame(tmp_path):
    """ltx-core: noise over the clip's 9 frames, the last repeated up to an 11-frame context (multi-step); a single
    x0 step draws over the whole context."""
    decoder = load_diffusion_decoder(write_diffusion_vae(tmp_path / "vae.safetensors"), F32).module
    z, context = torch.zeros(1, 8, 2, 2, 3), torch.zeros(1, 11, 8, 12, 16)
    x = decoder.noise(z, context, torch.Generator().manual_seed(0), single_x0=False)
    assert x.shape == (1, 3, 11, 16, 24) and all(torch.equal(x[:, :, i], x[:, :, 8]) for i in (9, 10))
    assert not torch.equal(x[:, :, 7], x[:, :, 8])
    x = decoder.noise(z, context, torch.Generator().manual_seed(0), single_x0=True)
    assert x.shape == (1, 3, 11, 16, 24) and not torch.equal(x[:, :, 9], x[:, :, 10])


def dense_neighborhood(q, k, v, kernel):
    """The dense-mask definition (diffusers' flex mask_mod) on [B, T, H, W, heads, dim]."""
    sizes = q.shape[1:4]
    masks = []
    for size, kern in zip(sizes, kernel):
        kern = min(kern, size)
        start, pos = window_starts(size, kern), torch.arange(size)
        masks.append((pos[None] >= start[:, None]) & (pos[None] < start[:, None] + kern))
    t, h, w = masks
    mask = (t[:, None, None, :, None, None] & h[None, :, None, None, :, None] & w[None, None, :, None, None, :])
    flat = [x.flatten(1, 3).transpose(1, 2) for x in (q, k, v)]
    out = torch.nn.functional.scaled_dot_product_attention(*flat, attn_mask=mask.reshape(sizes.numel(), -1),
                                                           scale=1.0)
    return out.transpose(1, 2).reshape(q.shape)


@pytest.mark.parametrize("shape, kernel, tile", [((2, 5, 9, 11, 2, 8), (3, 5, 3), None),
                                                 ((1, 4, 7, 10, 3, 4), (3, 3, 5), (2, 3)),
                                                 ((1, 3, 4, 4, 1, 8), (5, 7, 7), None),
                                                 ((1, 6, 13, 9, 2, 8), (3, 5, 5), (4, 4))])
def test_windowed_attention_equals_the_dense_mask(shape, kernel, tile):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
    assert torch.allclose(neighborhood_attention(q, k, v, kernel, tile), dense_neighborhood(q, k, v, kernel),
                          atol=1e-5)
