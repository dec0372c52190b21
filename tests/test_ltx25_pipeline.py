"""LTX-2.5 distilled text-to-video with audio: the demo bundle through the registry and the CLI, the duration
head choosing the length, the diffusion video decoder (default) or the conv one, and two Euler-ancestral steps of
our sampler vs diffusers' transformer + `LTXEulerAncestralRFScheduler` on the same weights and noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import LTX2VideoTransformer3DModel, LTXEulerAncestralRFScheduler
from einops import rearrange

from tests.test_ltx2_transformer import diffusers_twin
from videosdgx.bundle_files import MissingFilesError, find_bundle_files
from videosdgx.cli import main
from videosdgx.families import family
from videosdgx.install.comfyui import ModelFolders
from videosdgx.job import VideoRequest
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.loaders import load_dit
from videosdgx.ltx2.pipeline import decode_video
from videosdgx.ltx2.pipeline25 import diffusion_decode
from videosdgx.ltx2.sampler import TextContext, denoise
from videosdgx.ltx2.schedule import distilled_sigmas
from videosdgx.media.still import recompress_image
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.sampling.ancestral import EulerAncestralSolver
from videosdgx.testing.ltx2 import write_ltx2_checkpoint
from videosdgx.testing.ltx25 import tiny_dit25_config

BUNDLE = "ltx-2.5-22b-distilled"
F32 = LoadRequest(dtype=torch.float32)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    ltx2 = family("ltx2")
    models = tmp_path_factory.mktemp("ltx25")
    ltx2.hook("demo")(BUNDLE, models)
    variant = ltx2.variant_table()[BUNDLE]
    return ltx2.hook("pipeline")(variant, find_bundle_files(BUNDLE, ModelFolders(models)), F32)


def test_generates_video_with_audio_and_the_duration_head_picks_the_length(pipeline):
    result = pipeline.generate(VideoRequest("a cat on a boat", width=64, height=64, steps=2, seed=3))
    video, audio, _ = pipeline.text_encoder.encoder.encode(["a cat on a boat"])
    expected = pipeline.duration_head.predict_frames(video, audio, 24.0)
    assert result.frames.shape == (expected, 64, 64, 3) and (expected - 1) % 8 == 0
    assert result.audio["sample_rate"] == 48000 and result.audio["waveform"].shape[1] == 2
    fixed = pipeline.generate(VideoRequest("a cat on a boat", width=64, height=64, frames=9, steps=2, seed=3))
    assert fixed.frames.shape[0] == 9
    again = pipeline.generate(VideoRequest("a cat on a boat", width=64, height=64, frames=9, steps=2, seed=3))
    assert torch.equal(again.latents[0], fixed.latents[0])  # seeded ancestral noise; caches cleared between jobs


def test_image_to_video_keeps_the_first_latent_frame_through_ancestral_noise(pipeline):
    image = torch.rand(1, 50, 70, 3, generator=torch.Generator().manual_seed(0))
    result = pipeline.generate(VideoRequest("waves", image=image, width=64, height=64, frames=9, steps=3))
    seen = recompress_image(image, 18)  # the image after H.264 at LTX-2.5's default image_crf
    expected = pipeline.video_vae.encode(torch.nn.functional.interpolate(
        seen.permute(0, 3, 1, 2), size=(64, 64), mode="bicubic").clamp(0, 1).mul(2).sub(1)[:, :, None])
    video, _ = result.latents
    assert torch.allclose(video[:, :, :1], expected, atol=1e-5)


def test_ancestral_noise_never_reaches_conditioned_tokens():
    """What the DiT sees at every step: the conditioned first frame stays exactly clean (re-pinned after each
    renoising step), while the generated tokens are renoised."""
    from videosdgx.ltx2.sampler import VideoCondition

    seen = []

    def model(video, audio, perturbation=None):
        seen.append(video.tokens.clone())
        return torch.randn_like(video.tokens), torch.zeros_like(audio.tokens)

    g = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 4, 2, 2, 2, generator=g)
    mask = torch.ones(1, 1, 2, 2, 2)
    mask[:, :, 0] = 0.0
    sigmas = distilled_sigmas(3)
    video = clean * (1 - mask) + torch.randn(1, 4, 2, 2, 2, generator=g) * mask
    solvers = [EulerAncestralSolver(sigmas, 1.0, generator=torch.Generator().manual_seed(1))] * 2
    context = TextContext(torch.zeros(1, 3, 8), torch.zeros(1, 3, 8))
    denoise(model, video, torch.zeros(1, 2, 3, 4), sigmas, context, condition=VideoCondition(clean, mask),
            solvers=tuple(solvers))
    first = rearrange(clean, "b c f h w -> b (f h w) c")[:, :4]
    assert len(seen) == 3 and all(torch.equal(tokens[:, :4], first) for tokens in seen)


def test_the_diffusion_decoder_decodes_unless_conv_is_asked_for(pipeline):
    assert pipeline.diffusion_decoder is not None  # the bundle's ltx-2.5-video-vae-bf16 (raw layout)
    request = VideoRequest("a cat on a boat", width=64, height=64, frames=9, steps=2, seed=5)
    diffusion = pipeline.generate(request)
    latents = diffusion.latents[0]
    assert torch.equal(diffusion.frames, diffusion_decode(pipeline.diffusion_decoder, latents, 5))
    conv = pipeline.generate(VideoRequest("a cat on a boat", width=64, height=64, frames=9, steps=2, seed=5,
                                          options={"video_decoder": "conv"}))
    assert torch.equal(conv.latents[0], latents)
    assert torch.allclose(conv.frames, decode_video(pipeline.video_vae, latents))
    assert conv.frames.shape == diffusion.frames.shape == (9, 64, 64, 3)
    assert not torch.allclose(conv.frames, diffusion.frames, atol=1e-2)


def test_the_diffusion_decoder_is_refused_before_sampling_when_not_loaded(pipeline, monkeypatch):
    monkeypatch.setattr(pipeline, "diffusion_decoder", None)
    monkeypatch.setattr(pipeline, "sample", lambda *a, **k: pytest.fail("sampled"))
    request = VideoRequest("waves", width=64, height=64, frames=9, steps=1, options={"video_decoder": "diffusion"})
    with pytest.raises(ConfigurationError, match=r"bundle ltx-2.5-22b-distilled has no diffusion video VAE \("
                       r"ltx-2.5-video-vae-bf16.safetensors in models/vae\); install it with `python install.py "
                       r"--models ltx-2.5-22b-distilled`, or pass --option video_decoder=conv."):
        pipeline.generate(request)


def test_an_unknown_video_decoder_is_refused_before_loading(caplog):
    code = main(["generate", "--demo", "--model", BUNDLE, "--prompt", "waves", "--option", "video_decoder=vae"])
    assert code == 2
    assert ("--option video_decoder=vae: LTX-2.5 22B distilled (audio + video) decodes with one of diffusion, "
            "conv (default diffusion).") in caplog.messages
    code = main(["generate", "--demo", "--model", "ltx-2.3-22b-distilled", "--prompt", "waves", "--option",
                 "video_decoder=diffusion"])
    assert code == 2 and "decodes with its conv VAE only" in caplog.messages[-1]


def test_cli_demo_writes_an_mp4_with_audio(tmp_path, capsys):
    out = tmp_path / "ltx25.mp4"
    code = main(["generate", "--demo", "--model", BUNDLE, "--prompt", "waves on a beach", "--width", "64",
                 "--height", "64", "--frames", "9", "--steps", "2", "--out", str(out)])
    assert code == 0 and out.stat().st_size > 0
    assert "(9 frames, 64x64, 24 fps, with audio) - demo" in capsys.readouterr().out


def test_missing_gated_files_say_how_to_get_them(tmp_path):
    message = r"Gated repos \(Lightricks/LTX-2.5\): accept the licence on huggingface.co and set HF_TOKEN"
    with pytest.raises(MissingFilesError, match=message):
        find_bundle_files(BUNDLE, ModelFolders(tmp_path))


def test_two_ancestral_steps_match_diffusers(tmp_path):
    cfg = tiny_dit25_config()
    path = write_ltx2_checkpoint(tmp_path / "dit.safetensors", cfg, seed=9, prefixed=False, dtype=torch.float32)
    ours = load_dit(path, F32, expected_version="2.5", cross_timestep="cross").module
    ours.text_kv_cache = True
    with open_checkpoint(path) as checkpoint:
        weights = {to_diffusers_key(k): checkpoint.get(k).clone() for k in checkpoint.keys()}
    reference = LTX2VideoTransformer3DModel(**{**diffusers_twin(cfg).config, "ff_bias": False,
                                               "use_prompt_adaln_single": False,
                                               "use_keyframes_abs_pos_embedding": True}).eval()
    reference.load_state_dict(weights, strict=True)
    g = torch.Generator().manual_seed(0)
    frames, height, width, audio_frames, fps = 2, 2, 3, 5, 25.0
    video = torch.randn(1, cfg.in_channels, frames, height, width, generator=g)
    audio = torch.randn(1, 2, audio_frames, cfg.audio_in_channels // 2, generator=g)
    context = TextContext(torch.randn(1, 6, cfg.dim, generator=g), torch.randn(1, 6, cfg.audio_dim, generator=g))
    sigmas = distilled_sigmas(2)
    solvers = [EulerAncestralSolver(sigmas, 1.0, generator=torch.Generator().manual_seed(10007))] * 2
    got_video, got_audio = denoise(ours, video, audio, sigmas, context, fps=fps, solvers=tuple(solvers))

    vx, ax = rearrange(video, "b c f h w -> b (f h w) c"), rearrange(audio, "b c t m -> b t (c m)")
    generator = torch.Generator().manual_seed(10007)
    schedulers = [LTXEulerAncestralRFScheduler(eta=1.0) for _ in range(2)]
    for scheduler in schedulers:
        scheduler.set_timesteps(sigmas=sigmas.tolist())
    with torch.no_grad():
        for step, t in enumerate(schedulers[0].timesteps[:-1]):
            s = torch.full((1,), float(t))
            v, a = reference(hidden_states=vx, audio_hidden_states=ax, encoder_hidden_states=context.video,
                             audio_encoder_hidden_states=context.audio, timestep=s.expand(1, vx.shape[1]),
                             audio_timestep=s.expand(1, ax.shape[1]), sigma=s, audio_sigma=s, num_frames=frames,
                             height=height, width=width, fps=fps, audio_num_frames=audio_frames,
                             use_cross_timestep=True, return_dict=False)
            vx = schedulers[0].step(v, t, vx, generator=generator, return_dict=False)[0]
            ax = schedulers[1].step(a, t, ax, generator=generator, return_dict=False)[0]
    ref_video = rearrange(vx, "b (f h w) c -> b c f h w", f=frames, h=height, w=width)
    ref_audio = rearrange(ax, "b t (c m) -> b c t m", c=2)
    for got, ref in ((got_video, ref_video), (got_audio, ref_audio)):
        assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-3
    assert {len(cache) for _, cache in ours._text_cache.values()} == {cfg.num_layers}
