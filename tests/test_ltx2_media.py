"""LTX-2 media models: parity with diffusers through our key maps (video VAE 19B / 2.3, audio VAE, vocoders,
latent upsamplers), streamed chunked decode vs whole decode, mel front-end, loaders on fixture files, bad input."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE
from einops import rearrange

from videosdgx.ltx2.audio_mel import log_mel, mel_filterbank
from videosdgx.ltx2.audio_vae import LTX2AudioVAE, audio_config_from_shapes
from videosdgx.ltx2.media_keys import diffusers_video_vae_map, diffusers_vocoder_key
from videosdgx.ltx2.media_loaders import load_audio_vae, load_upsampler, load_video_vae, load_vocoder
from videosdgx.ltx2.upsampler import LTX2LatentUpsampler, upsampler_config
from videosdgx.ltx2.video_vae import LTX2VideoVAE, config_from_checkpoint
from videosdgx.ltx2.vocoder import BWEVocoder, build_vocoder
from videosdgx.runtime.errors import CheckpointError, ConfigurationError, WrongComponentError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.ltx2_media import (
    media_checkpoint_state,
    media_config,
    video_vae_config,
    video_vae_state,
    write_split_files,
)

TOLERANCE = 1e-4  # max |ours - reference| / max |reference|, fp32 CPU; measured 0.0 (bit-identical) everywhere
STREAM_TOLERANCE = 1e-5  # streamed chunked decode vs whole-clip decode; measured <= 1.3e-6
DIT_MARKER = "model.diffusion_model.av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight"

VIDEO_VAE = {  # toy widths, released block structure; distinct widths and depths so a wrong mapping fails
    "19b": dict(
        block_out_channels=(16, 32, 64, 128),
        layers_per_block=(1, 2, 1, 1, 2),
        decoder_block_out_channels=(16, 32, 64),
        decoder_layers_per_block=(1, 2, 1, 2),
        decoder_spatial_padding_mode="reflect",
    ),
    "2.3": dict(
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=(1, 2, 1, 1, 2),
        decoder_block_out_channels=(16, 32, 32, 64),
        decoder_layers_per_block=(1, 2, 1, 1, 2),
        decoder_spatio_temporal_scaling=(True,) * 4,
        decoder_inject_noise=(False,) * 5,
        upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
        upsample_residual=(False,) * 4,
        upsample_factor=(2, 2, 1, 2),
        decoder_spatial_padding_mode="zeros",
    ),
}


def _randomize(model: torch.nn.Module, seed: int, std: float = 0.2) -> dict[str, torch.Tensor]:
    """Random parameters (stored filters and bases keep their values); returns the state dict."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.state_dict()


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def video_vae_twins(layout: str, patch_size: int = 2, spatial: int = 16, seed: int = 1):
    """(diffusers `AutoencoderKLLTX2Video` with random weights and statistics, ours loaded strictly from them through
    `diffusers_video_vae_map`); toy widths of `layout`, the given patch size and spatial stride, 8x in time."""
    torch.manual_seed(0)
    ref = AutoencoderKLLTX2Video(
        latent_channels=8,
        patch_size=patch_size,
        decoder_causal=False,
        encoder_spatial_padding_mode="zeros",
        spatial_compression_ratio=spatial,
        temporal_compression_ratio=8,
        **VIDEO_VAE[layout],
    ).eval()
    state = _randomize(ref, seed)
    state["latents_mean"].copy_(torch.randn(8) * 0.3)
    state["latents_std"].copy_(torch.rand(8) + 0.5)
    names = diffusers_video_vae_map(state)
    ours_state = {names[k]: v for k, v in state.items()}
    ours = LTX2VideoVAE(config_from_checkpoint({k: tuple(v.shape) for k, v in ours_state.items()})).eval()
    ours.load_state_dict(ours_state, strict=True)
    return ref, ours


@pytest.fixture(scope="module", params=["19b", "2.3"])
def video_pair(request):
    """(layout, diffusers AutoencoderKLLTX2Video, ours loaded strictly through diffusers_video_vae_map, stats)."""
    ref, ours = video_vae_twins(request.param)
    stats = (ref.latents_mean.view(1, -1, 1, 1, 1), ref.latents_std.view(1, -1, 1, 1, 1))
    return request.param, ref, ours, stats


def test_video_vae_config_from_shapes_is_the_released_structure(video_pair):
    layout, _, ours, _ = video_pair
    expected = video_vae_config(layout)
    assert ours.config.encoder_blocks == expected.encoder_blocks
    assert ours.config.decoder_blocks == expected.decoder_blocks
    assert ours.config.decoder_padding == expected.decoder_padding
    assert (ours.config.temporal_factor, ours.config.spatial_factor) == (8, 16)


def test_video_vae_encode_decode_match_diffusers(video_pair):
    _, ref, ours, (mean, std) = video_pair
    video = torch.rand(1, 3, 17, 32, 48) * 2 - 1
    with torch.no_grad():
        ref_latents = (ref.encode(video).latent_dist.mode() - mean) / std
        latents = torch.randn(1, 8, 3, 2, 3)
        ref_video = ref.decode(latents * std + mean, causal=False).sample
    assert _rel(ours.encode(video), ref_latents) <= TOLERANCE
    assert _rel(ours.decode(latents), ref_video) <= TOLERANCE


@pytest.mark.parametrize(("chunk", "budget"), [(1, 0), (3, 0), (1, 24576)])
def test_streamed_decode_equals_whole_decode(video_pair, chunk, budget):
    """budget 24576 elements: the coarse steps take the whole clip at once, the finest 8 frames at a time."""
    _, _, ours, _ = video_pair
    latents = torch.randn(1, 8, 7, 2, 3, generator=torch.Generator().manual_seed(chunk))
    whole = ours.decode(latents)
    pieces = list(ours.decode_chunks(latents, chunk=chunk, budget=budget))
    assert len(pieces) >= 3  # frames come out while the clip is still being read
    assert max(p.shape[2] for p in pieces) <= 8 * (chunk + 2)
    assert _rel(torch.cat(pieces, dim=2), whole) <= STREAM_TOLERANCE


@pytest.mark.parametrize("layout", ["19b", "2.3"])
def test_video_vae_header_config_equals_shape_config(layout):
    state = {k: tuple(v.shape) for k, v in video_vae_state(layout, prefix="").items()}
    assert config_from_checkpoint(state, media_config(layout)["vae"]) == config_from_checkpoint(state)


def test_audio_vae_matches_diffusers():
    ref = AutoencoderKLLTX2Audio(
        base_channels=16, ch_mult=(1, 2, 3), num_res_blocks=2, latent_channels=4, mel_bins=16
    ).eval()
    state = dict(_randomize(ref, 2))
    state["latents_mean"], state["latents_std"] = torch.randn(16) * 0.3, torch.rand(16) + 0.5  # 4 ch x 4 bins
    ours = LTX2AudioVAE(audio_config_from_shapes({k: tuple(v.shape) for k, v in state.items()})).eval()
    ours.load_state_dict(state, strict=True)
    pack = lambda x: rearrange(x, "b c t f -> b t (c f)")  # noqa: E731
    unpack = lambda x: rearrange(x, "b t (c f) -> b c t f", c=4)  # noqa: E731
    mel, latents = torch.randn(1, 2, 37, 16), torch.randn(1, 4, 6, 4)
    with torch.no_grad():
        ref_latents = unpack((pack(ref.encode(mel).latent_dist.mode()) - state["latents_mean"]) / state["latents_std"])
        ref_mel = ref.decode(unpack(pack(latents) * state["latents_std"] + state["latents_mean"])).sample
    assert _rel(ours.encode(mel), ref_latents) <= TOLERANCE
    decoded = ours.decode(latents)
    assert decoded.shape == (1, 2, 21, 16)
    assert _rel(decoded, ref_mel) <= TOLERANCE


def test_log_mel_matches_reference_front_end():
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    bank = mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=64,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )
    assert np.abs(mel_filterbank().numpy() - bank).max() <= 1e-12
    audio = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32) * 0.3
    ref = np.stack(
        [
            spectrogram(
                a,
                window_function(1024, "hann"),
                frame_length=1024,
                hop_length=160,
                power=1.0,
                center=True,
                pad_mode="reflect",
                mel_filters=bank,
                mel_floor=1e-5,
                log_mel="log",
            )
            for a in audio
        ]
    )
    ours = log_mel(torch.from_numpy(audio)[None])[0].numpy()
    assert ours.shape == (2, 26, 64)
    assert np.abs(ours - ref.transpose(0, 2, 1)).max() <= 1e-5


def test_hifigan_vocoder_matches_diffusers():
    ref = LTX2Vocoder(
        in_channels=8,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[16, 15, 8],
        upsample_factors=[6, 5, 2],
        resnet_kernel_sizes=[3, 5],
        resnet_dilations=[[1, 3, 5], [1, 2, 3]],
    ).eval()
    state = {diffusers_vocoder_key(k): v for k, v in _randomize(ref, 3, 0.3).items()}
    header = {"upsample_rates": [6, 5, 2], "resblock_dilation_sizes": [[1, 3, 5], [1, 2, 3]]}
    ours = build_vocoder({k: tuple(v.shape) for k, v in state.items()}, header).eval()
    ours.load_state_dict(state, strict=True)
    mel = torch.randn(1, 2, 9, 4)
    with torch.no_grad():
        assert _rel(ours(mel), ref(mel)) <= TOLERANCE


def test_bigvgan_bwe_vocoder_matches_diffusers():
    ref = LTX2VocoderWithBWE(
        in_channels=8,
        hidden_channels=32,
        upsample_kernel_sizes=[4, 4],
        upsample_factors=[2, 2],
        resnet_kernel_sizes=[3, 5],
        resnet_dilations=[[1, 3, 5], [1, 2, 3]],
        bwe_in_channels=8,
        bwe_hidden_channels=16,
        bwe_upsample_kernel_sizes=[7, 4],
        bwe_upsample_factors=[3, 2],
        bwe_resnet_kernel_sizes=[3],
        bwe_resnet_dilations=[[1, 3, 5]],
        filter_length=16,
        hop_length=2,
        window_length=16,
        num_mel_channels=4,
    ).eval()
    state = _randomize(ref, 4, 0.3)
    g = torch.Generator().manual_seed(5)
    state["mel_stft.mel_basis"].copy_(torch.rand(state["mel_stft.mel_basis"].shape, generator=g))
    state["mel_stft.stft_fn.forward_basis"].copy_(
        torch.randn(state["mel_stft.stft_fn.forward_basis"].shape, generator=g)
    )
    state = {diffusers_vocoder_key(k): v for k, v in state.items() if diffusers_vocoder_key(k)}
    header = {
        "vocoder": {
            "upsample_rates": [2, 2],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 2, 3]],
            "use_tanh_at_final": False,
        },
        "bwe": {"upsample_rates": [3, 2], "hop_length": 2, "n_fft": 16},
    }
    ours = build_vocoder({k: tuple(v.shape) for k, v in state.items()}, header)
    assert isinstance(ours, BWEVocoder) and ours.vocoder.cfg.final == "clamp"  # ltx-core clamps; diffusers does not
    ours = BWEVocoder(dataclasses.replace(ours.vocoder.cfg, final="none"), ours.bwe).eval()
    ours.load_state_dict(state, strict=True)
    mel = torch.randn(1, 2, 9, 4)
    with torch.no_grad():
        out = ours(mel)
        assert out.shape == (1, 2, 9 * 4 * 3) and ours.sample_rate == 48000
        assert _rel(out, ref(mel)) <= TOLERANCE


@pytest.mark.parametrize("kind", ["x2", "x1.5", "temporal"])
def test_latent_upsampler_matches_diffusers(kind):
    args = {
        "x2": dict(use_rational_resampler=False),
        "x1.5": dict(rational_spatial_scale=1.5),
        "temporal": dict(spatial_upsample=False, temporal_upsample=True),
    }[kind]
    ref = LTX2LatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=2, **args).eval()
    state = _randomize(ref, 6, 0.2)
    ours = LTX2LatentUpsampler(upsampler_config({k: tuple(v.shape) for k, v in state.items()})).eval()
    ours.load_state_dict(state, strict=True)
    latents = torch.randn(1, 8, 3, 4, 6)
    with torch.no_grad():
        assert _rel(ours(latents), ref(latents)) <= TOLERANCE
    mean, std = torch.randn(8), torch.rand(8) + 0.5
    shape = (1, -1, 1, 1, 1)
    expected = (ours(latents * std.view(shape) + mean.view(shape)) - mean.view(shape)) / std.view(shape)
    assert torch.allclose(ours.upsample(latents, mean, std), expected)


@pytest.fixture(scope="module", params=["19b", "2.3"])
def media_files(request, tmp_path_factory):
    """A single file (media parts + a DiT marker, with a `config` header) and Kijai-style split files."""
    layout = request.param
    folder = tmp_path_factory.mktemp(f"ltx2_{layout}")
    state = media_checkpoint_state(layout) | {DIT_MARKER: torch.zeros(4, 4)}
    single = save_safetensors(folder / "ltx-2-tiny.safetensors", state, {"config": json.dumps(media_config(layout))})
    return layout, state, single, write_split_files(folder, layout)


def test_loaders_read_single_file_and_split_files(media_files):
    layout, state, single, split = media_files
    request = LoadRequest()
    latents = torch.randn(1, 8, 2, 2, 3)
    videos = [load_video_vae(path, request).module for path in (single, split["vae"])]
    assert torch.equal(videos[0].latents_mean, state["vae.per_channel_statistics.mean-of-means"])
    assert torch.equal(videos[0].decode(latents), videos[1].decode(latents))
    assert videos[0].decode(latents).shape == (1, 3, 9, 32, 48)
    for path in (single, split["audio_vae"]):
        audio = load_audio_vae(path, request).module
        assert audio.encoder is None and torch.equal(
            audio.latents_std, state["audio_vae.per_channel_statistics.std-of-means"]
        )
        mel = audio.decode(torch.randn(1, 4, 5, 4))
        vocoder = load_vocoder(path, request).module
        assert vocoder.sample_rate == (24000 if layout == "19b" else 48000)
        assert vocoder(mel).shape == (1, 2, 17 * vocoder.sample_rate // 100)
    upsampler = load_upsampler(split["upsampler"], request).module
    assert upsampler.upsample(latents, torch.zeros(8), torch.ones(8)).shape == (1, 8, 2, 4, 6)


def test_wrong_files_and_bad_inputs_get_clear_errors(media_files):
    _, _, single, split = media_files
    request = LoadRequest()
    with pytest.raises(WrongComponentError, match="latent upsampler.*not a LTX-2 video VAE"):
        load_video_vae(split["upsampler"], request)
    with pytest.raises(WrongComponentError, match="LTX-2 latent upsampler loader"):
        load_upsampler(single, request)
    vae = load_video_vae(split["vae"], request).module
    with pytest.raises(ConfigurationError, match=r"8n\+1|8k|frames"):
        vae.encode(torch.zeros(1, 3, 10, 32, 48))
    with pytest.raises(ConfigurationError, match="divisible by 16"):
        vae.encode(torch.zeros(1, 3, 9, 40, 48))
    with pytest.raises(ConfigurationError, match=r"\[B, 8, F, H, W\]"):
        vae.decode(torch.zeros(1, 4, 2, 2, 2))
    with pytest.raises(ConfigurationError, match="at least 1"):
        next(vae.decode_chunks(torch.zeros(1, 8, 2, 2, 2), chunk=0))
    audio = load_audio_vae(split["audio_vae"], request).module
    with pytest.raises(ConfigurationError, match="no encoder"):
        audio.encode(torch.zeros(1, 2, 8, 16))
    with pytest.raises(ConfigurationError, match="stereo log-mel"):
        load_vocoder(split["audio_vae"], request).module(torch.zeros(1, 2, 8, 64))


def test_diffusers_layout_video_vae_file_loads(video_pair, tmp_path):
    _, ref, ours, _ = video_pair
    path = save_safetensors(tmp_path / "diffusion_pytorch_model.safetensors", ref.state_dict())
    loaded = load_video_vae(path, LoadRequest()).module
    latents = torch.randn(1, 8, 2, 2, 3)
    assert torch.equal(loaded.decode(latents), ours.decode(latents))


def test_timestep_conditioned_video_decoder_is_refused():
    shapes = {k: tuple(v.shape) for k, v in video_vae_state("19b", prefix="").items()}
    shapes["decoder.last_time_embedder.timestep_embedder.linear_1.weight"] = (8, 8)
    with pytest.raises(CheckpointError, match="timestep-conditioned"):
        config_from_checkpoint(shapes)


def test_causal_decoder_matches_diffusers_and_streams(video_pair):
    _, ref, ours, (mean, std) = video_pair
    latents = torch.randn(1, 8, 4, 2, 3, generator=torch.Generator().manual_seed(9))
    ours.decoder.causal = True
    try:
        whole = ours.decode(latents)
        streamed = torch.cat(list(ours.decode_chunks(latents, chunk=1, budget=0)), dim=2)
    finally:
        ours.decoder.causal = False
    with torch.no_grad():
        assert _rel(whole, ref.decode(latents * std + mean, causal=True).sample) <= TOLERANCE
    assert _rel(streamed, whole) <= STREAM_TOLERANCE
