"""LTX-2 first / last frame conditioning against diffusers `LTX2ConditionPipeline` (its `prepare_latents`,
`_prepare_keyframe_coords` and denoising loop, on the same tiny weights, VAE and noise; 19B Euler, 2.5
Euler-ancestral), and the H.264 re-compression of conditioning images against diffusers' own."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    LTX2ConditionPipeline,
    LTX2VideoTransformer3DModel,
    LTXEulerAncestralRFScheduler,
)
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf
from einops import rearrange

from tests.test_generate_cli import write_png
from tests.test_ltx2_media import video_vae_twins
from tests.test_ltx2_transformer import diffusers_twin
from videosdgx.bundle_files import find_bundle_files
from videosdgx.cli import main
from videosdgx.families import family
from videosdgx.install.comfyui import ModelFolders
from videosdgx.job import VideoRequest
from videosdgx.ltx2.conditioning import KEYFRAME_SEED_OFFSET, FrameImage, image_condition, noised_keyframes
from videosdgx.ltx2.guidance import GuiderParams
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.memory import audio_tokens, latent_tokens, request_sampling_activations, sampling_activations
from videosdgx.ltx2.rope import keyframe_positions
from videosdgx.ltx2.sampler import Guidance, TextContext, denoise, noised
from videosdgx.ltx2.schedule import distilled_sigmas, ltx2_sigmas
from videosdgx.media import read_video
from videosdgx.media.still import h264_still, recompress_image
from videosdgx.plan import Size
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.ancestral import EulerAncestralSolver
from videosdgx.sampling.noise import seeded_noise
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
    image = np.stack([(x * 2.5) % 256, (y * 3.7) % 256, ((x + y) * 1.3) % 256], -1)
    return np.clip(image + g.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


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
    return video_vae_twins("19b", patch_size=4, spatial=32, seed=2)


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


def test_guidance_passes_batched_or_one_by_one_agree_with_keyframes(tmp_path, vae_pair):
    """Dev guidance (CFG, STG, modality isolation, rescale) over the appended tokens: one batched forward or one
    pass at a time (--low-memory) give the same latents."""
    _, our_vae = vae_pair
    cfg, ours, _ = _dit_pair(tmp_path, "19B")
    shape = (1, cfg.in_channels, 3, 2, 3)
    images = [FrameImage(torch.rand(1, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(s)), f, 0.8)
              for s, f in ((0, 0), (1, 16))]
    condition = noised_keyframes(image_condition(our_vae, images, WIDTH, HEIGHT, shape, FPS, 0, torch.device("cpu")),
                                 seed=3, sigma=1.0)
    assert condition.keyframes.start is not None and not torch.equal(condition.keyframes.start,
                                                                     condition.keyframes.clean)
    g = torch.Generator().manual_seed(5)
    context = lambda: TextContext(torch.randn(1, 6, 24, generator=g), torch.randn(1, 6, 24, generator=g))
    positive, negative = context(), context()
    video = noised(condition.clean * (1 - condition.mask), torch.randn(shape, generator=g), 1.0, condition.mask)
    audio = torch.randn(1, 2, 17, 4, generator=g)
    guidance = Guidance(GuiderParams(3.0, 1.0, 3.0, 0.7), GuiderParams(7.0, 1.0, 3.0, 0.7), (1,))
    sigmas = ltx2_sigmas(2, tokens=18)
    runs = [denoise(ours, video, audio, sigmas, positive, negative, guidance, FPS, condition, batched=batched)
            for batched in (True, False)]
    for batched, one_by_one in zip(*runs):
        assert torch.allclose(batched, one_by_one, atol=1e-5)


# ------------------------------------------------------------------------------------------------ pipelines
@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    ltx2, loaded = family("ltx2"), {}
    for bundle in ("ltx-2-19b-distilled", "ltx-2.5-22b-distilled"):
        models = tmp_path_factory.mktemp(bundle)
        ltx2.hook("demo")(bundle, models)
        loaded[bundle] = ltx2.hook("pipeline")(ltx2.variant_table()[bundle],
                                               find_bundle_files(bundle, ModelFolders(models)), F32)
    return loaded


def _spy(monkeypatch, dit) -> list:
    """Record what the DiT is given at every forward: (tokens, timesteps, positions, keyframe marker)."""
    seen, forward = [], dit.forward

    def spy(video, audio, perturbation=None):
        seen.append((video.tokens.clone(), video.timesteps.clone(), video.positions.clone(), video.keyframes))
        return forward(video, audio, perturbation)

    monkeypatch.setattr(dit, "forward", spy)
    return seen


def _encoded(pipe, image: torch.Tensor, width: int, height: int, crf: int) -> torch.Tensor:
    """Tokens `[1, h*w, C]` of `image` as the pipeline encodes it at a stage's size."""
    pixels = torch.nn.functional.interpolate(recompress_image(image, crf).permute(0, 3, 1, 2), size=(height, width),
                                             mode="bicubic").clamp(0, 1).mul(2).sub(1)[:, :, None]
    return rearrange(pipe.video_vae.encode(pixels), "b c f h w -> b (f h w) c")


def test_two_stage_first_and_last_frame_rebuilds_the_keyframes_at_each_stage(pipelines, monkeypatch):
    pipe = pipelines["ltx-2-19b-distilled"]
    factor = pipe.video_vae.config.spatial_factor  # 16 in the demo files
    first, last = (torch.rand(1, 50, 70, 3, generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    seen = _spy(monkeypatch, pipe.dit)
    result = pipe.generate(VideoRequest("waves", image=first, end_image=last, width=128, height=64, frames=9,
                                        steps=2, fps=24))
    assert result.frames.shape == (9, 64, 128, 3)
    video, _ = result.latents
    assert video.shape[2:] == (2, 64 // factor, 128 // factor)  # the appended tokens are gone
    assert len(seen) == 2 + 3  # stage 1 (2 steps), stage 2 (3 refining steps)
    for (tokens, timesteps, positions, marker), (width, height) in zip(seen, [(64, 32)] * 2 + [(128, 64)] * 3):
        frame = (height // factor) * (width // factor)
        appended = _encoded(pipe, last, width, height, 33)
        assert tokens.shape[1] == 3 * frame and marker is None
        assert torch.allclose(tokens[:, 2 * frame:], appended, atol=1e-5)
        assert (timesteps[:, 2 * frame:] == 0).all() and (timesteps[:, :frame] == 0).all()
        assert (timesteps[:, frame:2 * frame] > 0).all()
        assert torch.equal(positions[:, :, 2 * frame:], keyframe_positions(1, height // factor, width // factor, 8,
                                                                          24.0))
    first_tokens = _encoded(pipe, first, 128, 64, 33)
    assert torch.allclose(rearrange(video[:, :, :1], "b c f h w -> b (f h w) c"), first_tokens, atol=1e-5)


def test_ltx25_last_frame_tokens_stay_clean_through_ancestral_steps(pipelines, monkeypatch):
    pipe = pipelines["ltx-2.5-22b-distilled"]
    frame = (64 // pipe.video_vae.config.spatial_factor) ** 2
    first, last = (torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(s)) for s in (2, 3))
    seen = _spy(monkeypatch, pipe.dit)
    result = pipe.generate(VideoRequest("waves", image=first, end_image=last, width=64, height=64, frames=17,
                                        steps=3, options={"video_decoder": "conv", "two_stage": False}))
    assert result.frames.shape == (17, 64, 64, 3)
    appended = _encoded(pipe, last, 64, 64, 18)
    grid = 3 * frame
    assert len(seen) == 3
    for tokens, timesteps, _, marker in seen:
        assert tokens.shape[1] == grid + frame and marker is None
        assert torch.allclose(tokens[:, grid:], appended, atol=1e-5)
        assert (timesteps[:, grid:] == 0).all() and (timesteps[:, frame:grid] > 0).all()
    assert not torch.equal(seen[1][0][:, frame:grid], seen[0][0][:, frame:grid])


def test_end_image_strength_below_one_starts_the_keyframe_noised(pipelines, monkeypatch):
    pipe = pipelines["ltx-2.5-22b-distilled"]
    grid = 2 * (64 // pipe.video_vae.config.spatial_factor) ** 2
    last = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    seen = _spy(monkeypatch, pipe.dit)
    pipe.generate(VideoRequest("waves", end_image=last, width=64, height=64, frames=9, steps=2, seed=4,
                               options={"video_decoder": "conv", "two_stage": False, "end_image_strength": 0.75, "image_crf": 0}))
    sigma = float(distilled_sigmas(2)[0])
    tokens, timesteps, _, _ = seen[0]
    clean = _encoded(pipe, last, 64, 64, 0)
    assert torch.allclose(timesteps[:, grid:], torch.full_like(timesteps[:, grid:], sigma * 0.25))
    assert (timesteps[:, :grid] == sigma).all()  # no first frame given: every generated token is noised
    noise = seeded_noise(clean.shape, 4 + KEYFRAME_SEED_OFFSET)
    assert torch.allclose(tokens[:, grid:], noised(clean, noise, sigma, torch.full((1, 1, 1), 0.25)), atol=1e-5)


def test_memory_plan_counts_the_end_image_tokens():
    cfg = tiny_dit_config("19B")
    size = Size(128, 64, 17)
    without = request_sampling_activations(cfg, size, 24.0, 1, False, True, 4)
    with_end = request_sampling_activations(cfg, size, 24.0, 1, False, True, 4, keyframes=1)
    assert with_end == sampling_activations(cfg, latent_tokens(128, 64, 17) + 2 * 4, audio_tokens(17, 24.0), 1, 4)
    assert with_end > without


# ------------------------------------------------------------------------------------------------ CLI
def _png(path, seed: int) -> str:
    return str(write_png(path, seed))


@pytest.mark.parametrize("bundle", ["ltx-2.5-22b-distilled", "ltx-2-19b-distilled"])
def test_cli_first_and_last_frame_writes_an_mp4(bundle, tmp_path, capsys):
    out = tmp_path / "flf.mp4"
    code = main(["generate", "--demo", "--model", bundle, "--prompt", "a door opens", "--image",
                 _png(tmp_path / "a.png", 0), "--end-image", _png(tmp_path / "b.png", 1), "--width", "128",
                 "--height", "64", "--frames", "9", "--steps", "2", "--out", str(out)])
    assert code == 0
    clip = read_video(out)
    assert clip.frames.shape == (9, 64, 128, 3) and clip.audio is not None
    assert f"wrote {out} (9 frames, 128x64, 24 fps, with audio)" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--option", "end_image_strength=2"], "--option end_image_strength=2: write a number from 0 (the image is only "
                                           "a start) to 1 (the frame is kept exactly; the default)."),
    (["--option", "image_strength=strong"], "--option image_strength=strong: write a number from 0"),
    (["--option", "image_crf=60"], "--option image_crf=60: write a whole number from 1 (least compressed) to 51, or "
                                   "0 to feed images uncompressed (default 18)."),
    (["--option", "image_crf=17.5"], "--option image_crf=17.5: write a whole number"),
    (["--frames", "1"], "--end-image: a 1-frame video has no last frame apart from its first; ask for 9 frames or "
                        "more (--frames 9, 17, ...), or give the image as --image."),
])
def test_bad_conditioning_options_are_refused_before_loading(args, message, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("videosdgx.ltx2.pipeline25.load_ltx25_pipeline", lambda *a, **k: pytest.fail("loaded"))
    code = main(["generate", "--demo", "--model", "ltx-2.5-22b-distilled", "--prompt", "waves", "--end-image",
                 _png(tmp_path / "b.png", 1), "--out", str(tmp_path / "x.mp4"), *args])
    assert code == 2 and any(m.startswith(message) for m in caplog.messages), caplog.messages


def test_end_image_of_a_one_frame_node_request_is_refused(pipelines):
    pipe = pipelines["ltx-2.5-22b-distilled"]
    request = VideoRequest("waves", end_image=torch.rand(1, 8, 8, 3), width=64, height=64, frames=1, steps=1)
    with pytest.raises(ConfigurationError, match="a 1-frame video has no last frame"):
        pipe.generate(request)


def test_ltx25_both_stages_and_the_temporal_round_keep_the_end_image(pipelines, monkeypatch):
    """2.5 two-stage with `temporal_upscale`: every stage re-encodes the end image at its size and places it at its
    last pixel frame (the temporal round: frame 2n - 2 of 2n - 1, at twice the frame rate)."""
    pipe = pipelines["ltx-2.5-22b-distilled"]
    factor = pipe.video_vae.config.spatial_factor
    first, last = (torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(s)) for s in (4, 5))
    seen = _spy(monkeypatch, pipe.dit)
    result = pipe.generate(VideoRequest("waves", image=first, end_image=last, width=64, height=64, frames=9,
                                        steps=1, options={"video_decoder": "conv", "temporal_upscale": True}))
    assert result.frames.shape == (17, 64, 64, 3) and result.fps == 48
    stages = [(32, 2, 8, 24.0)] + [(64, 2, 8, 24.0)] * 3 + [(64, 3, 16, 48.0)] * 4  # side, latent frames, end, fps
    assert len(seen) == len(stages)
    for (tokens, timesteps, positions, marker), (side, frames, end, fps) in zip(seen, stages):
        frame = (side // factor) ** 2
        assert tokens.shape[1] == (frames + 1) * frame and marker is None
        assert torch.allclose(tokens[:, frames * frame:], _encoded(pipe, last, side, side, 18), atol=1e-5)
        assert (timesteps[:, frames * frame:] == 0).all()
        assert torch.equal(positions[:, :, frames * frame:], keyframe_positions(1, side // factor, side // factor,
                                                                               end, fps))
