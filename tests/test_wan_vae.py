"""Wan 2.1 / 2.2 VAE: parity with diffusers' AutoencoderKLWan through our key maps, detection, chunking, tiling."""

import dataclasses

import pytest
import torch
from diffusers import AutoencoderKLWan

from videosdgx.runtime.errors import CheckpointError, ConfigurationError, WrongComponentError
from videosdgx.wan.vae import WAN21_VAE, WanVAE21, WanVAE21Config, build_vae, vae_config_from_shapes
from videosdgx.wan.vae22 import WAN22_VAE, WanVAE22, WanVAE22Config
from videosdgx.wan.vae_blocks import CACHE_T, FeatureCache
from videosdgx.wan.vae_keys import diffusers_to_official, is_diffusers_vae, official_to_diffusers

TOLERANCE = 1e-4  # max |ours - diffusers| relative to max |diffusers|; measured <= 3e-6 (fp32, CPU)

COMMON = dict(z_dim=4, num_res_blocks=2, temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
              latents_std=[1.0] * 4)
TINY_DIFFUSERS = {
    "2.1": dict(COMMON, base_dim=8, dim_mult=[1, 2, 4, 4], attn_scales=[]),
    "2.2": dict(COMMON, base_dim=8, decoder_base_dim=16, is_residual=True, in_channels=12, out_channels=12,
                patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16),
}
PIXELS = {"2.1": 16, "2.2": 32}  # frame size that encodes to a 2x2 latent
LATENT_MEAN = (0.3, -0.2, 0.1, 0.5)
LATENT_STD = (1.5, 0.5, 2.0, 0.8)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Perturb every weight so that swapped or mis-mapped tensors (norm gammas included) change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.3 * noise if name.endswith("gamma") else 0.7 * p + 0.05 * noise)


@pytest.fixture(scope="module", params=["2.1", "2.2"])
def pair(request):
    """(version, diffusers reference, our model loaded strictly through diffusers_to_official)."""
    version = request.param
    torch.manual_seed(0)
    ref = AutoencoderKLWan(**TINY_DIFFUSERS[version]).eval()
    _randomize(ref, seed=1)
    official = diffusers_to_official(ref.state_dict())
    config = vae_config_from_shapes({k: v.shape for k, v in official.items()})
    config = dataclasses.replace(config, latents_mean=LATENT_MEAN, latents_std=LATENT_STD)
    ours = build_vae(config).eval()
    ours.load_state_dict(official, strict=True)
    return version, ref, ours


def _relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("frames", [1, 9, 13])
def test_encode_matches_diffusers(pair, frames):
    version, ref, ours = pair
    size = PIXELS[version]
    video = torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(frames)) * 2 - 1
    with torch.no_grad():
        mu = ref.encode(video).latent_dist.mode()
    latents = ours.encode(video)
    assert latents.shape == (1, 4, (frames - 1) // 4 + 1, 2, 2)
    mean = torch.tensor(LATENT_MEAN).view(1, 4, 1, 1, 1)
    std = torch.tensor(LATENT_STD).view(1, 4, 1, 1, 1)
    assert _relative_error(latents, (mu - mean) / std) < TOLERANCE


@pytest.mark.parametrize("latent_frames", [1, 3, 4])
def test_decode_matches_diffusers(pair, latent_frames):
    version, ref, ours = pair
    z_norm = torch.randn(1, 4, latent_frames, 2, 2, generator=torch.Generator().manual_seed(latent_frames))
    mean = torch.tensor(LATENT_MEAN).view(1, 4, 1, 1, 1)
    std = torch.tensor(LATENT_STD).view(1, 4, 1, 1, 1)
    with torch.no_grad():
        expected = ref.decode(z_norm * std + mean).sample
    video = ours.decode(z_norm)
    size = PIXELS[version]
    assert video.shape == (1, 3, 4 * latent_frames - 3, size, size)
    assert (expected.abs() < 1).float().mean() > 0.5, "reference output mostly clamped: parity would be weak"
    assert _relative_error(video, expected) < TOLERANCE


def test_key_map_round_trip_and_structure(pair):
    _, ref, ours = pair
    diffusers_sd = ref.state_dict()
    official = diffusers_to_official(diffusers_sd)
    assert {k: tuple(v.shape) for k, v in official.items()} == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert official_to_diffusers(official).keys() == diffusers_sd.keys()
    assert is_diffusers_vae(diffusers_sd) and not is_diffusers_vae(official)
    reloaded = AutoencoderKLWan(**TINY_DIFFUSERS[pair[0]]).eval()
    reloaded.load_state_dict(official_to_diffusers(ours.state_dict()), strict=True)
    z = torch.randn(1, 4, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(reloaded.decode(z).sample, ref.decode(z).sample)


@pytest.mark.parametrize(
    ("official", "diffusers"),
    [
        ("conv1.weight", "quant_conv.weight"),
        ("conv2.bias", "post_quant_conv.bias"),
        ("encoder.middle.1.to_qkv.weight", "encoder.mid_block.attentions.0.to_qkv.weight"),
        ("decoder.middle.2.residual.3.gamma", "decoder.mid_block.resnets.1.norm2.gamma"),
        ("decoder.head.0.gamma", "decoder.norm_out.gamma"),
        ("encoder.downsamples.5.time_conv.weight", "encoder.down_blocks.5.time_conv.weight"),
        ("decoder.upsamples.4.shortcut.weight", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight"),
        ("decoder.upsamples.7.resample.1.bias", "decoder.up_blocks.1.upsamplers.0.resample.1.bias"),
        ("decoder.upsamples.14.residual.6.weight", "decoder.up_blocks.3.resnets.2.conv2.weight"),
    ],
)
def test_wan21_key_rules_follow_the_spec_table(official, diffusers):
    with torch.device("meta"):
        official_sd = {k: k for k in WanVAE21(WAN21_VAE).state_dict()}
    assert official_to_diffusers(official_sd)[diffusers] == official


@pytest.mark.parametrize(
    ("official", "diffusers"),
    [
        ("encoder.downsamples.1.downsamples.2.time_conv.weight", "encoder.down_blocks.1.downsampler.time_conv.weight"),
        ("encoder.downsamples.1.downsamples.0.shortcut.bias", "encoder.down_blocks.1.resnets.0.conv_shortcut.bias"),
        ("decoder.upsamples.0.upsamples.3.time_conv.weight", "decoder.up_blocks.0.upsampler.time_conv.weight"),
        ("decoder.upsamples.3.upsamples.2.residual.0.gamma", "decoder.up_blocks.3.resnets.2.norm1.gamma"),
    ],
)
def test_wan22_key_rules(official, diffusers):
    with torch.device("meta"):
        official_sd = {k: k for k in WanVAE22(WAN22_VAE).state_dict()}
    assert official_to_diffusers(official_sd)[diffusers] == official


def test_unknown_keys_are_refused():
    with pytest.raises(CheckpointError, match="not a Wan VAE"):
        keys = ["post_quant_conv.weight", "decoder.mid_block.attentions.0.to_qkv.weight", "lora.A"]
        diffusers_to_official(dict.fromkeys(keys + ["decoder.up_blocks.0.resnets.0.conv1.weight"], 0))
    with pytest.raises(WrongComponentError, match="not a Wan VAE"):
        vae_config_from_shapes({"blocks.0.ffn.0.weight": (8, 4)})


def test_real_size_models_on_meta_are_told_apart():
    shapes = {}
    for cls, preset in ((WanVAE21, WAN21_VAE), (WanVAE22, WAN22_VAE)):
        with torch.device("meta"):
            model = cls(preset)
        shapes[cls] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert vae_config_from_shapes(shapes[cls]) == preset
    wan21, wan22 = shapes[WanVAE21], shapes[WanVAE22]
    assert wan21["decoder.middle.0.residual.0.gamma"] == (384, 1, 1, 1)
    assert wan21["encoder.middle.1.norm.gamma"] == (384, 1, 1)
    assert wan21["decoder.upsamples.4.shortcut.weight"] == (384, 192, 1, 1, 1)
    assert wan22["decoder.upsamples.0.upsamples.3.time_conv.weight"] == (2048, 1024, 3, 1, 1)
    assert wan22["encoder.conv1.weight"] == (160, 12, 3, 3, 3)
    assert wan22["decoder.head.2.weight"] == (12, 256, 3, 3, 3)
    # Official fp32 .pth sizes = parameters plus tens of kB of pickle/zip framing.
    wan21_bytes = 4 * sum(torch.Size(s).numel() for s in wan21.values())
    wan22_bytes = 4 * sum(torch.Size(s).numel() for s in wan22.values())
    assert 507_609_880 - 100_000 < wan21_bytes < 507_609_880
    assert 2_818_839_170 - 100_000 < wan22_bytes < 2_818_839_170


def test_frame_count_must_be_4n_plus_1(pair):
    _, _, ours = pair
    size = PIXELS[pair[0]]
    with pytest.raises(ConfigurationError, match="got 10; use 9 or 13 frames"):
        ours.encode(torch.zeros(1, 3, 10, size, size))
    with pytest.raises(ConfigurationError, match="use 1 or 5 frames"):
        ours.encode(torch.zeros(1, 3, 3, size, size))
    with pytest.raises(ConfigurationError, match="divisible by"):
        ours.encode(torch.zeros(1, 3, 5, size + 4, size))


def test_decode_chunks_concatenate_to_decode(pair):
    _, _, ours = pair
    z = torch.randn(1, 4, 4, 2, 2, generator=torch.Generator().manual_seed(7))
    chunks = list(ours.decode_chunks(z))
    assert [c.shape[2] for c in chunks] == [1, 4, 4, 4]
    assert torch.equal(torch.cat(chunks, dim=2), ours.decode(z))


def _largest_activation(model: torch.nn.Module, latents: torch.Tensor) -> int:
    largest = 0

    def record(module, args, output):
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel())

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        for _ in model.decode_chunks(latents):
            pass
    finally:
        handle.remove()
    return largest


def test_decode_memory_does_not_grow_with_frames(pair):
    """Rough memory check: the largest activation and the carried cache are the same for 3 and 5 latent frames."""
    _, _, ours = pair
    z = torch.randn(1, 4, 5, 2, 2, generator=torch.Generator().manual_seed(3))
    assert _largest_activation(ours, z[:, :, :3]) == _largest_activation(ours, z) > 0
    cache, sizes = FeatureCache(), []
    with torch.no_grad():
        for t in range(z.shape[2]):
            ours.decoder(ours.conv2(z[:, :, t : t + 1]), cache)
            cache.first_chunk = False
            sizes.append(cache.numel())
            assert max(len(f) if isinstance(f, list) else f.shape[2] for f in cache.frames.values()) <= CACHE_T
    assert sizes[2] == sizes[3] == sizes[4] > 0


def test_tiled_decode_is_close_on_smooth_input():
    torch.manual_seed(0)
    model = WanVAE21(WanVAE21Config(dim=8, z_dim=4, latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 12), torch.linspace(0, 1, 12), indexing="ij")
    z = torch.stack([yy, xx, yy * xx, 1 - yy])[None, :, None].expand(1, 4, 2, 12, 12) * 0.5
    full = model.decode(z)
    assert torch.equal(model.decode(z, tile=(12, 12), overlap=4), full)
    errors = []
    for tile, overlap in (((6, 6), 2), ((8, 8), 4)):
        tiled = model.decode(z, tile=tile, overlap=overlap)
        assert tiled.shape == full.shape == (1, 3, 5, 96, 96)
        errors.append((tiled - full).abs().mean().item() / full.abs().mean().item())
    assert errors[0] < 0.2 and errors[1] < 0.1
    assert errors[1] < errors[0]  # more overlap, closer to the untiled decode
    with pytest.raises(ConfigurationError, match="overlap"):
        model.decode(z, tile=(4, 4), overlap=4)
