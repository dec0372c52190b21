"""SkyReels V3 talking avatar: the clip chaining against the official `TalkingAvatarPipeline.generate` run on CPU
(tests/reference/skyreels_v3/a2v_chain.safetensors), its pieces, the colour matching, and the CLI end to end."""

import logging
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from videosdgx.cli import main
from videosdgx.media.audio import write_audio
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.skyreels_v3 import a2v
from videosdgx.skyreels_v3.a2v import (AvatarSettings, AvatarText, avatar_timesteps, clip_count, keyframe_indices,
                                      make_avatar_video, padded_length, portrait_pixels)
from videosdgx.skyreels_v3.buckets import avatar_bucket_size
from videosdgx.skyreels_v3.colour import lab_to_rgb, match_colours, rgb_to_lab
from videosdgx.skyreels_v3.loaders import load_avatar_dit
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.skyreels_v3 import seeded_weights
from videosdgx.wan.pipeline import decode_frames
from videosdgx.wan.vae import WanVAE21, WanVAE21Config

REFERENCE = Path(__file__).parent / "reference" / "skyreels_v3"
sys.path.insert(0, str(REFERENCE))
import tiny  # noqa: E402
from test_skyreels_audio import meta_avatar  # noqa: E402

CHAIN = AvatarSettings(steps=tiny.CHAIN["sampling_steps"], shift=tiny.CHAIN["shift"],
                       guidance=tiny.CHAIN["text_guide_scale"], guidance_audio=tiny.CHAIN["audio_guide_scale"],
                       clip_frames=tiny.CHAIN["frame_num"], motion_frames=tiny.CHAIN["motion_frame"],
                       drop_frames=tiny.CHAIN["drop_frame"])


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Our avatar DiT (loaded from a file with the reference weights) and VAE, and the shared stand-ins."""
    shapes = {k: tuple(v.shape) for k, v in meta_avatar().state_dict().items()}
    path = save_safetensors(tmp_path_factory.mktemp("a2v") / "a2v.safetensors",
                            seeded_weights(shapes, tiny.AVATAR_SEED))
    model = load_avatar_dit(path, LoadRequest()).module.eval()
    vae = WanVAE21(WanVAE21Config(dim=tiny.VAE_DIM, latents_mean=tuple(tiny.LATENTS_MEAN),
                                  latents_std=tuple(tiny.LATENTS_STD))).eval()
    vae.load_state_dict(seeded_weights({k: tuple(v.shape) for k, v in vae.state_dict().items()}, tiny.VAE_SEED))
    return model, vae, tiny.chain_inputs()


def run_chain(parts, frames: int, monkeypatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model, vae, inputs = parts
    matched = []
    monkeypatch.setattr(a2v, "match_colours", lambda *args: matched.append(match_colours(*args)) or matched[-1])

    def encode(pixels):
        with torch.no_grad():
            return vae.encode(pixels)

    portrait = portrait_pixels(inputs["portrait_uint8"][None].float() / 255, *tiny.PORTRAIT)
    video = make_avatar_video(
        model, encode, lambda z: decode_frames(vae, z).permute(3, 0, 1, 2)[None] * 2 - 1,
        lambda image: tiny.fake_clip(inputs["clip"], image), portrait, inputs["features"][:frames],
        AvatarText(inputs["prompt"], inputs["negative"], inputs["connection"]), CHAIN, tiny.CHAIN["seed"])
    return video[0].permute(1, 2, 3, 0), matched


def test_chained_clips_match_official(parts, monkeypatch):
    """50 speech frames: a keyframe clip, then 4 chained clips (motion frames re-noised, pseudo keyframes at the end,
    4 frames dropped), both guidances on; every clip colour-matched to the portrait."""
    reference = load_file(str(REFERENCE / "a2v_chain.safetensors"))
    frames, clips = run_chain(parts, tiny.CHAIN_FRAMES, monkeypatch)
    assert len(clips) == clip_count(tiny.CHAIN_FRAMES, CHAIN) == 5
    # Each clip is several guided sampling steps followed by Lab colour matching: float summation order (which
    # changes with the CPU thread count) moves them by 0.5e-4 to 1.5e-4; the modules alone agree to < 1e-6.
    assert relative_error(clips[0], reference["keyframe_clip"]) <= 5e-4
    assert relative_error(clips[2], reference["chained_clip_2"]) <= 5e-4
    expected = reference["chain_frames"].float() / 255
    assert frames.shape == expected.shape == (tiny.CHAIN_FRAMES, *tiny.PORTRAIT, 3)
    assert expected.std() > 0.05
    assert (frames - expected).abs().max().item() <= 1.01 / 255  # 8-bit truncation may flip on float noise


def test_short_speech_is_one_clip_cut_to_its_length(parts, monkeypatch):
    reference = load_file(str(REFERENCE / "a2v_chain.safetensors"))["short_frames"].float() / 255
    frames, clips = run_chain(parts, tiny.SHORT_FRAMES, monkeypatch)
    assert len(clips) == 1 and frames.shape == reference.shape == (tiny.SHORT_FRAMES, *tiny.PORTRAIT, 3)
    assert (frames - reference).abs().max().item() <= 1.01 / 255


def test_clip_plan_of_the_release():
    """81-frame clips, 5 motion + 12 dropped frames (the official CLI): 64 new frames per chained clip."""
    release = AvatarSettings(steps=4, shift=11, guidance=1, guidance_audio=1)
    assert padded_length(80, 81, 17) == 81 and padded_length(81, 81, 17) == 81
    assert padded_length(146, 81, 17) == 209 and padded_length(145, 81, 17) == 145
    assert keyframe_indices(81, release) == [80]
    assert padded_length(200, 81, 17) == 209
    assert keyframe_indices(209, release) == [31, 55, 80]  # clip ends 80, 144, 208 scaled by 80 / 208
    assert clip_count(50, release) == 1 and clip_count(200, release) == 4
    t = avatar_timesteps(4, 11.0)
    assert t[0] == 1000 and t[-1] == 0 and torch.all(t[:-1] > t[1:])
    assert t[1].item() == pytest.approx(1000 * 11 * (667 / 1000) / (1 + 10 * 667 / 1000), rel=1e-6)


def test_colour_matching_moves_lab_statistics_to_the_portrait():
    generator = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 3, 8, 8, generator=generator)
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 1e-4
    reference = torch.rand(1, 3, 1, 8, 8, generator=generator) * 2 - 1
    video = torch.rand(1, 3, 4, 8, 8, generator=generator) * 0.5 - 0.8  # darker, flatter
    matched = match_colours(video, reference)
    def lab_means(pixels):
        return rgb_to_lab((pixels[0].transpose(0, 1) + 1) / 2).flatten(2).mean(-1)

    target = lab_means(reference)
    assert (lab_means(video) - target).abs().max() > 20  # before: far off; after: up to the 0..1 clipping
    assert (lab_means(matched) - target).abs().max() < 1.5
    assert torch.allclose(match_colours(reference, reference), reference, atol=1e-4)


def test_portrait_buckets_and_crop():
    assert avatar_bucket_size(1200, 900, "720P") == (1088, 832)  # 1.33 -> 1.31
    assert avatar_bucket_size(900, 1600, "480P") == (480, 832)
    image = torch.rand(1, 30, 20, 3)
    pixels = portrait_pixels(image, 16, 16)
    assert pixels.shape == (1, 3, 1, 16, 16) and pixels.min() >= -1 and pixels.max() <= 1


# ------------------------------------------------------------------ CLI: videosdgx generate --model skyreels-v3-a2v-19b

def write_speech(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    write_audio(path, {"waveform": torch.tensor(wave, dtype=torch.float32)[None, None], "sample_rate": rate})
    return path


def test_cli_demo_makes_a_talking_video_with_the_speech(tmp_path, capsys):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 45, 3), dtype=np.uint8)).save(tmp_path / "face.png")
    out = tmp_path / "avatar.mp4"
    code = main(["generate", "--demo", "--model", "skyreels-v3-a2v-19b", "--image", str(tmp_path / "face.png"),
                 "--audio", str(write_speech(tmp_path / "speech.wav", 1.0)), "--prompt", "a woman talks",
                 "--width", "32", "--height", "32", "--steps", "1", "--out", str(out)])
    assert code == 0 and "with audio" in capsys.readouterr().out
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 17 and container.streams.video[0].average_rate == 25
        assert len(container.streams.audio) == 1


@pytest.mark.parametrize("inputs, message", [
    (["--image", "{txt}", "--audio", "{wav}"], "--image {txt}: not a readable image"),
    (["--image", "{png}", "--audio", "{empty}"], "empty.wav holds no samples"),
    (["--image", "{png}", "--audio", "{long}"], "The audio lasts 201.0 s; SkyReels V3 A2V-19B (talking avatar) makes "
                                                "at most 200 s of video. Cut the audio."),
    (["--image", "{png}"], "needs --audio"),
    (["--image", "{png}", "--audio", "{wav}", "--option", "resolution=540P"], "Unknown resolution '540P' for"),
    (["--image", "{png}", "--audio", "{wav}", "--option", "motion_frames=70"], "carries 1 to 68 frames into the next"),
])
def test_cli_bad_avatar_inputs_fail_before_loading(tmp_path, caplog, inputs, message):
    def empty(path):
        with wave.open(str(path), "wb") as file:  # a valid WAV holding no samples
            file.setnchannels(1), file.setsampwidth(2), file.setframerate(16000)
        return path

    def text(path):
        path.write_text("not an image")
        return path

    def portrait(path):
        Image.new("RGB", (20, 30)).save(path)
        return path

    makers = {"{png}": lambda: portrait(tmp_path / "face.png"), "{txt}": lambda: text(tmp_path / "notes.txt"),
              "{empty}": lambda: empty(tmp_path / "empty.wav"), "{wav}": lambda: write_speech(tmp_path / "s.wav", 0.5),
              "{long}": lambda: write_audio(tmp_path / "long.wav", {"waveform": torch.zeros(1, 1, 201 * 1000),
                                                                    "sample_rate": 1000})}
    args = [str(makers[item]()) if item in makers else item for item in inputs]
    code = main(["generate", "--demo", "--model", "skyreels-v3-a2v-19b", *args, "--prompt", "hi",
                 "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert message.replace("{txt}", str(tmp_path / "notes.txt")) in error
    assert not any(r.getMessage().startswith("loading") for r in caplog.records)
