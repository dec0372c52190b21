"""LTX-2 first / last frame conditioning against diffusers `LTX2ConditionPipeline` (its `prepare_latents`,
`_prepare_keyframe_coords` and denoising loop, on the same tiny weights, VAE and noise; 19B Euler, 2.5
Euler-ancestral), and the H.264 re-compression of conditioning images against diffusers' own."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2ConditionPipeline,
    LTX2VideoTransformer3DModel,
    LTXEulerAncestralRFScheduler,
)
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf
from einops import rearrange

from tests.test_ltx2_media import VIDEO_VAE, _randomize
from tests.test_ltx2_transformer import diffusers_twin
from videosdgx.ltx2.conditioning import FrameImage, image_condition
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.media_keys import diffusers_video_vae_map
from videosdgx.ltx2.rope import keyframe_positions
from videosdgx.ltx2.sampler import TextContext, denoise, noised
from videosdgx.ltx2.schedule import distilled_sigmas
from videosdgx.ltx2.video_vae import LTX2VideoVAE, config_from_checkpoint
from videosdgx.media.still import h264_still, recompress_image
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.ancestral import EulerAncestralSolver
from videosdgx.testing.ltx2 import tiny_dit_config, write_ltx2_checkpoint
from videosdgx.testing.ltx25 import tiny_dit25_config

F32 = LoadRequest(dtype=torch.float32)
FRAMES, HEIGHT, WIDTH, FPS = 17, 64, 96, 25.0  # latents 3 x 2 x 3
AUDIO_CHANNELS, MEL_BINS = 2, 16  # packed audio width 2 * 16 / 4 = 8
TOLERANCE = 1e-3  # max |ours - reference| / max |reference| of the final latents


def _stub_pipeline() -> SimpleNamespace:
    return SimpleNamespace(transformer_spatial_patch_size=1, transformer_temporal_patch_size=1,
                           vae_temporal_compression_ratio=8, vae_spatial_compression_ratio=32)


@pytest.mark.parametrize(("latent_frames", "pixel_frame", "pixel_frames", "fps"),
                         [(1, 16, 1, 25.0), (1, 120, 1, 24.0), (1, 9, 1, 24.0), (2, 9, 9, 30.0)])
def test_keyframe_positions_equal_diffusers(latent_frames, pixel_frame, pixel_frames, fps):
    expected = LTX2ConditionPipeline._prepare_keyframe_coords(_stub_pipeline(), latent_frames, 2, 3, pixel_frame,
                                                              pixel_frames, fps, torch.device("cpu"))
    got = keyframe_positions(latent_frames, 2, 3, pixel_frame, fps, pixel_frames)
    assert torch.equal(got, expected)


def _test_image(height: int, width: int, seed: int) -> np.ndarray:
    """A uint8 image with edges, gradients and noise (odd sides are cropped by the codec)."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 2.5) % 256, (y * 3.7) % 256, ((x + y) * 1.3) % 256], -1) + g.normal(0, 20, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("crf", [18, 33])
def test_h264_still_equals_diffusers(crf):
    image = _test_image(67, 91, crf)
    ours = h264_still(image, crf)
    reference = apply_image_conditioning_crf(image, crf)
    assert ours.shape == reference.shape == (66, 90, 3)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() == 0  # measured: bit-identical
    assert np.abs(ours.astype(int) - image[:66, :90].astype(int)).mean() > 1  # it did compress
    as_tensor = recompress_image(torch.from_numpy(image)[None].float() / 255, crf)
    assert torch.equal(as_tensor[0], torch.from_numpy(reference).float() / 255)


def test_h264_still_off_and_bad_values():
    image = _test_image(8, 8, 0)
    assert h264_still(image, 0) is image
    with pytest.raises(ConfigurationError, match=r"image_crf must be 0 \(off\) to 51, got 60"):
        h264_still(image, 60)
    with pytest.raises(ConfigurationError, match=r"Expected an RGB uint8 image \[height, width, 3\], got float32"):
        h264_still(image.astype(np.float32), 18)


# ------------------------------------------------------------------------------------------------ sampling parity
@pytest.fixture(scope="module")
def vae_pair():
    """Diffusers' video VAE with the released 32 x / 8 x strides (toy widths) and ours loaded from its weights."""
    torch.manual_seed(0)
    reference = AutoencoderKLLTX2Video(latent_channels=8, patch_size=4, decoder_causal=False,
                                       encoder_spatial_padding_mode="zeros", spatial_compression_ratio=32,
                                       temporal_compression_ratio=8, **VIDEO_VAE["19b"]).eval()
    state = _randomize(reference, 2)
    state["latents_mean"].copy_(torch.randn(8) * 0.3)
    state["latents_std"].copy_(torch.rand(8) + 0.5)
    names = diffusers_video_vae_map(state)
    ours_state = {names[k]: v for k, v in state.items()}
    ours = LTX2VideoVAE(config_from_checkpoint({k: tuple(v.shape) for k, v in ours_state.items()})).eval()
    ours.load_state_dict(ours_state, strict=True)
    return reference, ours


def _dit_pair(tmp_path, version: str):
    """Our DiT from a tiny checkpoint and diffusers' transformer with the same weights (through our key map)."""
    cfg = tiny_dit25_config() if version == "2.5" else tiny_dit_config(version)
    path = write_ltx2_checkpoint(tmp_path / "dit.safetensors", cfg, seed=9, prefixed=False, dtype=torch.float32)
    ours = load_dit(path, F32, expected_version=version, cross_timestep="cross").module
    with open_checkpoint(path) as checkpoint:
        weights = {to_diffusers_key(k): checkpoint.get(k).clone() for k in checkpoint.keys()}
    extra = {"ff_bias": False, "use_prompt_adaln_single": False, "use_keyframes_abs_pos_embedding": True} \
        if version == "2.5" else {}
    reference = LTX2VideoTransformer3DModel(**{**diffusers_twin(cfg).config, **extra}).eval()
    reference.load_state_dict(weights, strict=True)
    return cfg, ours, reference


def _reference_sampling(pipe, conditions, sigmas, context, seed: int, ancestral: bool):
    """Diffusers' condition pipeline from `prepare_latents` on: its denoising loop without guidance (the x0 blend
    with the clean conditions), Euler or its Euler-ancestral scheduler (then re-blending after the renoising step,
    as ltx-core and diffusers' DFR pipeline do). Returns the final (video [B, C, F, H, W], audio) latents."""
    generator = torch.Generator().manual_seed(seed)
    channels = pipe.transformer.config.in_channels
    latents, mask, clean, keyframe_coords = pipe.prepare_latents(
        conditions, 1, channels, HEIGHT, WIDTH, FRAMES, FPS, noise_scale=float(sigmas[0]), dtype=torch.float32,
        device=torch.device("cpu"), generator=generator)
    audio_frames = round(FRAMES / FPS * 25)
    audio = pipe.prepare_audio_latents(1, AUDIO_CHANNELS, audio_frames, MEL_BINS, dtype=torch.float32,
                                       generator=generator) * sigmas[0]  # its pure noise, at the first sigma
    frames, height, width = (FRAMES - 1) // 8 + 1, HEIGHT // 32, WIDTH // 32
    coords = pipe.transformer.rope.prepare_video_coords(1, frames, height, width, torch.device("cpu"), fps=FPS)
    if keyframe_coords is not None:
        coords = torch.cat([coords, keyframe_coords], dim=2)
    if ancestral:
        schedulers = [LTXEulerAncestralRFScheduler(eta=1.0) for _ in range(2)]
        for scheduler in schedulers:
            scheduler.set_timesteps(sigmas=sigmas.tolist())
        step_generator = torch.Generator().manual_seed(seed + 10000)
    else:
        schedulers = [FlowMatchEulerDiscreteScheduler() for _ in range(2)]
        for scheduler in schedulers:
            scheduler.set_timesteps(sigmas=sigmas[:-1].tolist())
        step_generator = None
    video_scheduler, audio_scheduler = schedulers
    with torch.no_grad():
        for i, t in enumerate(video_scheduler.timesteps[: len(sigmas) - 1]):
            timestep = t.expand(1)
            v, a = pipe.transformer(
                hidden_states=latents, audio_hidden_states=audio, encoder_hidden_states=context.video,
                audio_encoder_hidden_states=context.audio, timestep=timestep[:, None] * (1 - mask[..., 0]),
                audio_timestep=timestep, sigma=timestep, audio_sigma=timestep, num_frames=frames, height=height,
                width=width, fps=FPS, audio_num_frames=audio_frames, video_coords=coords,
                use_cross_timestep=True, return_dict=False)
            x0 = pipe.convert_velocity_to_x0(latents, v.float(), i, video_scheduler)
            x0 = x0 * (1 - mask) + clean * mask
            v = pipe.convert_x0_to_velocity(latents, x0, i, video_scheduler)
            kwargs = {"generator": step_generator} if ancestral else {}
            latents = video_scheduler.step(v, t, latents, return_dict=False, **kwargs)[0]
            audio = audio_scheduler.step(a.float(), t, audio, return_dict=False, **kwargs)[0]
            if ancestral:
                latents = latents * (1 - mask) + clean * mask
    video = rearrange(latents[:, : frames * height * width], "b (f h w) c -> b c f h w", f=frames, h=height)
    return video, rearrange(audio, "b t (c m) -> b c t m", c=AUDIO_CHANNELS)


@pytest.mark.parametrize(("version", "end"), [("19B", True), ("2.5", False), ("2.5", True)])
def test_first_and_last_frame_sampling_matches_diffusers(tmp_path, vae_pair, version, end):
    """Two distilled steps conditioned on a first frame (and a last one, diffusers' latent index -1: pixel frame
    9 of 17), crf 0: ours (conditioning.py + denoise) vs diffusers on the same weights, VAE and noise."""
    reference_vae, our_vae = vae_pair
    cfg, ours, dit = _dit_pair(tmp_path, version)
    ancestral = version == "2.5"
    pipe = LTX2ConditionPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=reference_vae, audio_vae=None,
                                 text_encoder=None, tokenizer=None, connectors=None, transformer=dit, vocoder=None)
    first, last = _test_image(HEIGHT, WIDTH, 1), _test_image(HEIGHT, WIDTH, 2)[::-1].copy()
    conditions = [LTX2VideoCondition(frames=first, index=0, crf=0)]
    images = [FrameImage(torch.from_numpy(first)[None].float() / 255, 0)]
    if end:
        conditions.append(LTX2VideoCondition(frames=last, index=-1, crf=0))
        images.append(FrameImage(torch.from_numpy(last)[None].float() / 255, 9))
    g = torch.Generator().manual_seed(4)
    width = cfg.caption_channels or cfg.dim
    context = TextContext(torch.randn(1, 6, width, generator=g), torch.randn(1, 6, cfg.caption_channels or
                                                                               cfg.audio_dim, generator=g))
    sigmas = distilled_sigmas(2)
    seed = 21
    ref_video, ref_audio = _reference_sampling(pipe, conditions, sigmas, context, seed, ancestral)

    shape = (1, cfg.in_channels, (FRAMES - 1) // 8 + 1, HEIGHT // 32, WIDTH // 32)
    condition = image_condition(our_vae, images, WIDTH, HEIGHT, shape, FPS, 0, torch.device("cpu"))
    assert (condition.keyframes is not None) == end
    grid, appended = shape[2] * shape[3] * shape[4], shape[3] * shape[4] * int(end)
    generator = torch.Generator().manual_seed(seed)  # diffusers draws the video's noise, then the audio's
    noise = torch.randn(1, grid + appended, cfg.in_channels, generator=generator)
    audio_noise = torch.randn(1, round(FRAMES / FPS * 25), AUDIO_CHANNELS * MEL_BINS // 4, generator=generator)
    start = noised(condition.clean * (1 - condition.mask), rearrange(noise[:, :grid], "b (f h w) c -> b c f h w",
                   f=shape[2], h=shape[3]), float(sigmas[0]), condition.mask)
    solvers = None
    if ancestral:
        solver = EulerAncestralSolver(sigmas, 1.0, generator=torch.Generator().manual_seed(seed + 10000))
        solvers = (solver, solver)
    video, audio = denoise(ours, start, rearrange(audio_noise, "b t (c m) -> b c t m", c=AUDIO_CHANNELS) *
                           float(sigmas[0]), sigmas, context, fps=FPS, condition=condition, solvers=solvers)
    errors = [((got - ref).abs().max() / ref.abs().max()).item()
              for got, ref in ((video, ref_video), (audio, ref_audio))]
    print(f"{version} end={end}: relative max error video {errors[0]:.2e}, audio {errors[1]:.2e}")
    assert max(errors) < TOLERANCE
    assert torch.allclose(video[:, :, 0], condition.clean[:, :, 0], atol=1e-5)
