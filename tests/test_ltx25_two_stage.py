"""LTX-2.5 in two stages (spatial x2 upscaler), the dev variant (distilled LoRA 450 for the refining steps) and the
temporal x2 upscale, on the demo bundles through the real loaders: two-stage distilled sampling vs a diffusers
composition on the same weights and noise, both upscaler files vs diffusers' `LTX2LatentUpsamplerModel`, the
temporal round's frames / frame rate / held sound, and the refusals."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, LTX2VideoTransformer3DModel, LTXEulerAncestralRFScheduler
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline as DiffusersLTX2Pipeline
from einops import rearrange
from safetensors.torch import load_file

from tests.test_ltx2_transformer import diffusers_twin
from videosdgx.bundle_files import find_bundle_files
from videosdgx.cli import main
from videosdgx.families import family
from videosdgx.install.comfyui import ModelFolders
from videosdgx.job import VideoRequest
from videosdgx.ltx2 import pipeline as ltx2_pipeline
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.media_loaders import load_upsampler
from videosdgx.ltx2.pipeline import LTX2Size
from videosdgx.ltx2.pipeline25 import LTX25Pipeline, load_ltx25_pipeline
from videosdgx.ltx2.sampler import TextContext
from videosdgx.ltx2.schedule import STAGE2_SIGMAS, distilled_sigmas
from videosdgx.ltx2.temporal import TEMPORAL_SIGMAS
from videosdgx.ltx2.variants import LTX2_VARIANTS, option_flag
from videosdgx.runtime.errors import ConfigurationError, WrongComponentError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.noise import seeded_noise

F32 = LoadRequest(dtype=torch.float32)
DISTILLED, DEV = "ltx-2.5-22b-distilled", "ltx-2.5-22b-dev"


def _load(bundle: str, models) -> tuple[LTX25Pipeline, object]:
    ltx2 = family("ltx2")
    ltx2.hook("demo")(bundle, models)
    files = find_bundle_files(bundle, ModelFolders(models))
    return ltx2.hook("pipeline")(ltx2.variant_table()[bundle], files, F32), files


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    return _load(DISTILLED, tmp_path_factory.mktemp("ltx25-distilled"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    pipe, files = _load(DEV, tmp_path_factory.mktemp("ltx25-dev"))
    pipe.variant = type(pipe.variant)(**{**pipe.variant.__dict__, "stg_block": 1})  # the demo DiT has 2 blocks
    return pipe, files


def _context(pipe, seed: int = 0) -> TextContext:
    g = torch.Generator().manual_seed(seed)
    cfg = pipe.dit.cfg
    return TextContext(torch.randn(1, 6, cfg.dim, generator=g), torch.randn(1, 6, cfg.audio_dim, generator=g))


def _diffusers_dit(files, cfg) -> LTX2VideoTransformer3DModel:
    reference = LTX2VideoTransformer3DModel(**{**diffusers_twin(cfg).config, "ff_bias": False,
                                               "use_prompt_adaln_single": False,
                                               "use_keyframes_abs_pos_embedding": True}).eval()
    reference.load_state_dict({to_diffusers_key(k): v for k, v in load_file(files.one("dit")).items()}, strict=True)
    return reference


def _diffusers_upsampler(path, role: str) -> LTX2LatentUpsamplerModel:
    """The upscaler file `path` (role `upsampler` or `temporal_upsampler`) in diffusers' `LTX2LatentUpsamplerModel`."""
    state = load_file(path)
    mid, channels = state["initial_conv.weight"].shape[:2]
    temporal = role == "temporal_upsampler"
    upsampler = LTX2LatentUpsamplerModel(in_channels=channels, mid_channels=mid, num_blocks_per_stage=2, dims=3,
                                         spatial_upsample=not temporal, temporal_upsample=temporal,
                                         use_rational_resampler=False).eval()
    upsampler.load_state_dict(state, strict=True)
    return upsampler


def _diffusers_upscale(files, role: str, latents: torch.Tensor) -> torch.Tensor:
    """`role`'s file in `LTX2LatentUpsamplerModel`, on latents (de)normalised as `LTX2LatentUpsamplePipeline` does,
    with the diffusion video VAE file's statistics (the decoding file, as ltx-pipelines)."""
    upsampler = _diffusers_upsampler(files.one(role), role)
    statistics = load_file(files.one("video_decoder"))
    mean, std = (statistics[f"vae.per_channel_statistics.{k}"] for k in ("mean-of-means", "std-of-means"))
    return DiffusersLTX2Pipeline._normalize_latents(
        upsampler(DiffusersLTX2Pipeline._denormalize_latents(latents, mean, std)), mean, std)


def _diffusers_steps(reference, context: TextContext, video, audio, schedulers, fps: float, generator=None,
                     frozen_audio: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' transformer stepped by `schedulers` (video, audio); `frozen_audio`: the sound at timestep 0 and
    not stepped (`LTX2DFRTemporalRefinePipeline`'s `freeze_audio`)."""
    frames, height, width = video.shape[2:]
    vx, ax = rearrange(video, "b c f h w -> b (f h w) c"), rearrange(audio, "b c t m -> b t (c m)")
    extra = {} if generator is None else {"generator": generator}
    for t in schedulers[0].timesteps:
        s = torch.full((1,), float(t))
        a_s = torch.zeros(1) if frozen_audio else s
        v, a = reference(hidden_states=vx, audio_hidden_states=ax, encoder_hidden_states=context.video,
                         audio_encoder_hidden_states=context.audio, timestep=s.expand(1, vx.shape[1]),
                         audio_timestep=a_s.expand(1, ax.shape[1]), sigma=s, audio_sigma=a_s, num_frames=frames,
                         height=height, width=width, fps=fps, audio_num_frames=ax.shape[1],
                         use_cross_timestep=True, return_dict=False)
        vx = schedulers[0].step(v, t, vx, return_dict=False, **extra)[0]
        if not frozen_audio:
            ax = schedulers[1].step(a, t, ax, return_dict=False, **extra)[0]
    return (rearrange(vx, "b (f h w) c -> b c f h w", f=frames, h=height, w=width),
            rearrange(ax, "b t (c m) -> b c t m", c=audio.shape[1]))


def _schedulers(kind, sigmas, **config) -> list:
    """Two schedulers (video, audio) over `sigmas` (ending at 0: as many steps as intervals)."""
    schedulers = [kind(**config) for _ in range(2)]
    for scheduler in schedulers:
        scheduler.set_timesteps(sigmas=list(sigmas)[:-1] if kind is FlowMatchEulerDiscreteScheduler else list(sigmas))
        scheduler.timesteps = scheduler.timesteps[:len(sigmas) - 1]
    return schedulers


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).abs().max() / ref.abs().max()).item()


def test_two_stage_distilled_sampling_matches_a_diffusers_composition(distilled):
    """Stage 1 (2 Euler-ancestral steps at half size) -> x2 upscale of the un-normalised latents -> stage 2 (3 Euler
    steps), ours vs diffusers' transformer + `LTXEulerAncestralRFScheduler`, `LTX2LatentUpsamplerModel` with the
    latents (de)normalised as `LTX2LatentUpsamplePipeline` does, and `FlowMatchEulerDiscreteScheduler`."""
    pipe, files = distilled
    seed, fps = 4, 24.0
    request = VideoRequest("x", width=128, height=128, frames=9, steps=2, seed=seed, fps=24,
                           options={"cross_timestep": "cross"})
    positive = _context(pipe)
    video, audio, size, got_fps = pipe.sample(request, positive, None)
    assert (size.width, size.height, size.frames, got_fps) == (128, 128, 9, fps)

    reference = _diffusers_dit(files, pipe.dit.cfg)
    half, audio_shape = pipe._latent_shapes(LTX2Size(64, 64, 9), fps)
    sigmas = distilled_sigmas(2)
    start, s = float(sigmas[0]), STAGE2_SIGMAS[0]
    with torch.no_grad():
        ref_video, ref_audio = _diffusers_steps(
            reference, positive, start * seeded_noise(half, seed), start * seeded_noise(audio_shape, seed + 1),
            _schedulers(LTXEulerAncestralRFScheduler, sigmas.tolist(), eta=1.0), fps,
            torch.Generator().manual_seed(seed + 10000))
        ref_video = _diffusers_upscale(files, "upsampler", ref_video)
        full = ref_video.shape
        ref_video = s * seeded_noise(full, seed + 2) + (1 - s) * ref_video
        ref_audio = s * seeded_noise(audio_shape, seed + 3) + (1 - s) * ref_audio
        ref_video, ref_audio = _diffusers_steps(reference, positive, ref_video, ref_audio,
                                                _schedulers(FlowMatchEulerDiscreteScheduler, STAGE2_SIGMAS,
                                                            shift=1.0), fps)
    errors = [_relative_error(video, ref_video), _relative_error(audio, ref_audio)]
    print(f"two-stage parity: video {errors[0]:.2e}, audio {errors[1]:.2e} (relative max error)")
    assert video.shape == full == (1, 8, 2, 8, 8) and max(errors) < 1e-3


def test_the_temporal_round_matches_a_diffusers_composition(distilled, monkeypatch):
    """The stage-2 latents -> temporal x2 upscale -> re-noised to 0.975 -> 4 Euler-ancestral (eta 0.5) steps at
    48 fps with the sound held clean (resampled as diffusers' `_audio_window_for_tile` does for one window), ours vs
    diffusers' upsampler, transformer and `LTXEulerAncestralRFScheduler`."""
    from diffusers.pipelines.ltx2.pipeline_ltx2_dfr_temporal_refine import _audio_window_for_tile

    pipe, files = distilled
    seed = 6
    outputs, stage = [], pipe._stage
    monkeypatch.setattr(pipe, "_stage", lambda *args, **kwargs: outputs.append(stage(*args, **kwargs)) or outputs[-1])
    positive = _context(pipe, seed=1)
    request = VideoRequest("x", width=64, height=64, frames=9, steps=2, seed=seed, fps=24,
                           options={"cross_timestep": "cross", "temporal_upscale": True})
    video, audio, size, fps = pipe.sample(request, positive, None)
    assert (size.frames, fps) == (17, 48.0) and torch.equal(audio, outputs[1][1])

    reference = _diffusers_dit(files, pipe.dit.cfg)
    with torch.no_grad():
        ref_video = _diffusers_upscale(files, "temporal_upsampler", outputs[1][0])
        ref_video = 0.975 * seeded_noise(ref_video.shape, seed + 4) + 0.025 * ref_video
        window = _audio_window_for_tile(rearrange(audio, "b c t m -> b t (c m)"), pixel_start=0, tile_frames=17,
                                        playback_fps=48.0, source_seconds=9 / 24, conditioning_fps=48.0,
                                        audio_latents_per_second=25.0)
        held = rearrange(window, "b t (c m) -> b c t m", c=audio.shape[1])
        ref_video, _ = _diffusers_steps(reference, positive, ref_video, held,
                                        _schedulers(LTXEulerAncestralRFScheduler, TEMPORAL_SIGMAS.tolist(), eta=0.5),
                                        48.0, torch.Generator().manual_seed(seed + 1000), frozen_audio=True)
    error = _relative_error(video, ref_video)
    print(f"temporal round parity: video {error:.2e} (relative max error)")
    assert video.shape == ref_video.shape == (1, 8, 3, 4, 4) and error < 1e-3


@pytest.mark.parametrize("role", ["upsampler", "temporal_upsampler"])
def test_the_25_upscaler_files_match_diffusers(distilled, role):
    _, files = distilled
    path = files.one(role)
    ours = load_upsampler(path, F32).module
    reference = _diffusers_upsampler(path, role)
    channels, temporal = reference.in_channels, role == "temporal_upsampler"
    latents = torch.randn(1, channels, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, expected = ours(latents), reference(latents)
    assert ours.config.mode == ("temporal" if temporal else "spatial")
    assert got.shape == ((1, channels, 5, 4, 5) if temporal else (1, channels, 3, 8, 10))  # F -> 2F - 1
    error = _relative_error(got, expected)
    print(f"{role} parity: {error:.2e} (relative max error)")
    assert error < 1e-4


def test_temporal_upscale_doubles_frames_and_frame_rate_with_the_sound_held(distilled, monkeypatch):
    pipe = distilled[0]
    seen, outputs = [], []
    forward, stage = pipe.dit.forward, pipe._stage
    monkeypatch.setattr(pipe.dit, "forward", lambda video, audio, perturbation=None: (
        seen.append((video.tokens.shape[1], float(audio.sigma.max()), video.positions.clone(), video.tokens.clone()))
        or forward(video, audio, perturbation)))
    monkeypatch.setattr(pipe, "_stage", lambda *args, **kwargs: outputs.append(stage(*args, **kwargs)) or outputs[-1])
    stages = []
    request = VideoRequest("rain", width=64, height=64, frames=9, steps=2, seed=1,
                           options={"temporal_upscale": "true"})
    result = pipe.generate(request, progress=lambda stage, done, total: stages.append((stage, done, total)))
    assert result.frames.shape == (17, 64, 64, 3) and result.fps == 48.0
    assert result.latents[0].shape[2] == 3  # 2 latent frames -> 3
    assert result.audio["waveform"].shape[-1] <= round(17 / 48 * result.audio["sample_rate"])
    sampling = [s for s in stages if s[0] == "sampling"]
    assert [s for s in sampling if s[1] == s[2]] == [("sampling", 2, 2), ("sampling", 3, 3), ("sampling", 4, 4)]
    temporal = seen[-4:]
    assert all(tokens == 3 * 4 * 4 and sigma == 0.0 for tokens, sigma, _, _ in temporal)  # the held sound: sigma 0
    assert all(sigma > 0 for _, sigma, _, _ in seen[:-4])
    # the round starts from the stage-2 latents upscaled in time, re-noised to 0.975
    upscaled = pipe.temporal_upsampler.upsample(outputs[1][0], *pipe.latent_statistics())
    start = 0.975 * seeded_noise(upscaled.shape, 1 + 4) + 0.025 * upscaled
    assert torch.allclose(temporal[0][3], rearrange(start, "b c f h w -> b (f h w) c"), atol=1e-6)
    # RoPE time at the doubled rate (48 fps): the last latent frame starts at pixel frame 9 of the refined clip
    assert temporal[0][2][0, 0, -1, 0].item() == pytest.approx(9 / 48, abs=1e-6)
    again = pipe.generate(request)
    assert torch.equal(again.latents[0], result.latents[0])  # seeded, also the eta 0.5 renoising
    plain = pipe.generate(VideoRequest("rain", width=64, height=64, frames=9, steps=2, seed=1))
    assert torch.equal(plain.latents[1], result.latents[1])  # the shipped sound is the stages' sound


def test_temporal_upscale_keeps_the_start_image(distilled):
    pipe = distilled[0]
    image = torch.rand(1, 40, 40, 3, generator=torch.Generator().manual_seed(2))
    request = VideoRequest("waves", image=image, width=64, height=64, frames=9, steps=1, seed=2)
    plain = pipe.generate(request)
    doubled = pipe.generate(VideoRequest("waves", image=image, width=64, height=64, frames=9, steps=1, seed=2,
                                         options={"temporal_upscale": True}))
    assert torch.allclose(doubled.latents[0][:, :, :1], plain.latents[0][:, :, :1], atol=1e-6)


def test_dev_refines_with_the_lora_and_keeps_the_stage_1_sound(dev, monkeypatch):
    """Dev: stage 1 guided (4 passes batched), the distilled LoRA applied for stage 2 and the temporal round only,
    the stage-1 sound returned (ltx-pipelines `TI2VidTwoStagesPipeline`)."""
    pipe = dev[0]
    events, outputs = [], []
    apply = ltx2_pipeline.apply_lora

    def applying(*args, **kwargs):
        applied = apply(*args, **kwargs)
        remove = applied.remove
        applied.remove = lambda: events.append("remove") or remove()
        events.append("apply")
        return applied

    monkeypatch.setattr(ltx2_pipeline, "apply_lora", applying)
    forward, stage = pipe.dit.forward, pipe._stage
    monkeypatch.setattr(pipe.dit, "forward", lambda video, audio, perturbation=None: (
        events.append(video.tokens.shape[0]) or forward(video, audio, perturbation)))
    monkeypatch.setattr(pipe, "_stage", lambda *args, **kwargs: outputs.append(stage(*args, **kwargs)) or outputs[-1])
    reference = pipe.dit.transformer_blocks[0].attn1.to_q.weight.clone()
    result = pipe.generate(VideoRequest("rain", width=64, height=64, frames=9, steps=2, seed=3,
                                        options={"temporal_upscale": True}))
    assert events == [4, 4, "apply", 1, 1, 1, "remove", "apply", 1, 1, 1, 1, "remove"]
    assert torch.equal(pipe.dit.transformer_blocks[0].attn1.to_q.weight, reference)
    assert torch.equal(result.latents[1], outputs[0][1])  # stage 1's sound
    assert result.frames.shape == (17, 64, 64, 3)


def test_one_stage_on_request(distilled):
    pipe = distilled[0]
    assert option_flag({"two_stage": "false"}, "two_stage", True) is False  # the CLI's text, not bool("false")
    one = pipe.generate(VideoRequest("rain", width=96, height=96, frames=9, steps=2, options={"two_stage": "false"}))
    assert one.frames.shape == (9, 96, 96, 3)  # multiples of 32 (two stages: 64)


def test_refusals_name_the_missing_file(distilled, dev):
    pipe, plain = distilled[0], VideoRequest("x", width=64, height=64, frames=9, steps=1)
    bare = LTX25Pipeline(pipe.variant, pipe.dit, pipe.text_encoder.encoder, pipe.video_vae, pipe.audio_vae,
                         pipe.vocoder)
    with pytest.raises(ConfigurationError, match=r"needs the x2 latent upsampler \(ltx-2.5-latent-spatial-upscaler-"
                       r"x2-bf16-1.0.safetensors in models/latent_upscale_models\); install it with `python "
                       r"install.py --models ltx-2.5-22b-distilled`, or pass the option two_stage=false."):
        bare.generate(plain)
    with pytest.raises(ConfigurationError, match=r"--option temporal_upscale needs the temporal x2 latent upscaler "
                       r"\(ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0.safetensors in models/latent_upscale_models"
                       r"\); install it with `python install.py --models ltx-2.5-22b-distilled`, or leave the "
                       r"option out."):
        bare.sample(VideoRequest("x", options={"two_stage": False, "temporal_upscale": True}), None, None)
    dev_pipe = dev[0]
    no_lora = LTX25Pipeline(dev_pipe.variant, dev_pipe.dit, dev_pipe.text_encoder.encoder, dev_pipe.video_vae,
                            dev_pipe.audio_vae, dev_pipe.vocoder, dev_pipe.upsampler,
                            temporal_upsampler=dev_pipe.temporal_upsampler)
    with pytest.raises(ConfigurationError, match=r"LTX-2.5 22B dev \(audio \+ video\) refines with the distilled LoRA "
                       r"\(ltx-2.5-22b-distilled-lora-450-bf16.safetensors in models/loras\); install it with "
                       r"`python install.py --models ltx-2.5-22b-dev`, or pass the option temporal_upscale=false."):
        no_lora.sample(VideoRequest("x", options={"two_stage": False, "temporal_upscale": True}), None, None)


def test_an_upscaler_in_the_wrong_role_is_refused(distilled):
    files = distilled[1]
    swapped = type(files)(files.bundle, {**files.paths, "temporal_upsampler": files.paths["upsampler"]})
    with pytest.raises(WrongComponentError, match=r"is a spatial latent upscaler, but this place needs the temporal "
                       r"x2 one \(ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0.safetensors"):
        load_ltx25_pipeline(LTX2_VARIANTS[DISTILLED], swapped, F32)


@pytest.mark.parametrize(("options", "message"), [
    (["temporal_upscale=maybe"], "--option temporal_upscale=maybe: write temporal_upscale=true or "
                                 "temporal_upscale=false."),
    (["two_stage=2"], "--option two_stage=2: write two_stage=true or two_stage=false."),
    (["temporal_upscale=true", "--frames", "1"], "--option temporal_upscale doubles the frame rate of a clip: 1 "
                                                 "frame(s) is a still. Ask for at least 9 frames (they become 17), "
                                                 "or leave the option out."),
])
def test_bad_options_are_refused_before_loading(options, message, caplog):
    args = ["generate", "--demo", "--model", DEV, "--prompt", "waves", "--option", options[0], *options[1:]]
    assert main(args) == 2 and message in caplog.messages


def test_temporal_upscale_is_refused_for_models_without_it(caplog):
    code = main(["generate", "--demo", "--model", "ltx-2.3-22b-distilled", "--prompt", "waves", "--option",
                 "temporal_upscale=true"])
    assert code == 2 and caplog.messages[-1] == ("--option temporal_upscale: LTX-2.3 22B distilled (audio + video) "
                                                 "has no temporal upscaler (LTX-2.5 bundles have one); leave the "
                                                 "option out.")


def test_cli_demo_dev_writes_an_mp4_with_audio_at_twice_the_rate(tmp_path, capsys):
    out = tmp_path / "dev.mp4"
    code = main(["generate", "--demo", "--model", DEV, "--prompt", "waves on a beach", "--width", "64", "--height",
                 "64", "--frames", "9", "--steps", "2", "--option", "temporal_upscale=true", "--out", str(out)])
    assert code == 0 and out.stat().st_size > 0
    assert "(17 frames, 64x64, 48 fps, with audio) - demo" in capsys.readouterr().out


def test_the_plan_knows_the_two_stage_phases(distilled, dev):
    from videosdgx.plan import Size, plan_run
    from videosdgx.runtime.memory import MemoryStatus

    cpu = torch.device("cpu")
    status = MemoryStatus(cpu, None, None, 10**12, 10**12, False)
    for bundle, (_, files) in ((DISTILLED, distilled), (DEV, dev)):
        for given in (files, None):  # installed files, then the manifest's sizes
            plan = plan_run(bundle, Size(1536, 1024, 121), F32, False, given, status)
            names = [phase.name for phase in plan.phases]
            assert names == ["text encoding", "sampling", "upsampling", "stage-2 sampling", "decoding"], bundle
            resident = dict(plan.phases[1].resident)
            assert resident["upsampler"] > 0 and resident["temporal upscaler"] > 0
            assert ("distilled LoRA" in resident) == (bundle == DEV)
