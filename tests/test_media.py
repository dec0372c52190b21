"""Round trips and failure modes of videosdgx.media on tiny clips (9 frames, 64x48)."""

import logging
import math

import av
import pytest
import torch

from videosdgx.media import available_h264_encoder, read_audio, read_video, write_audio, write_video
from videosdgx.media import video as video_module
from videosdgx.runtime.errors import ConfigurationError, VideosDGXError

FPS = 8
SAMPLE_RATE = 16000
AAC_FRAME = 1024
# Measured on gradient_frames(): libx264 crf 19 mean |error| 0.0069, max 0.040; mpeg4 fallback 0.0072, 0.041.
MEAN_TOLERANCE, MAX_TOLERANCE = 0.015, 0.08


def gradient_frames(count: int = 9, height: int = 48, width: int = 64) -> torch.Tensor:
    """Smooth RGB gradients that drift over time: IMAGE [count, height, width, 3] in 0.1..0.9."""
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    frames = [torch.stack([0.1 + 0.8 * x, 0.1 + 0.8 * y, 0.1 + 0.3 * (x + y) + t / 40], dim=-1) for t in range(count)]
    return torch.stack(frames)


def gray_frames(count: int = 9) -> torch.Tensor:
    """Frame i is uniform gray 0.05 + i / 10, so a decoded frame tells which frame it was."""
    return torch.stack([torch.full((48, 64, 3), 0.05 + i / 10) for i in range(count)])


def two_tones(seconds: float) -> dict:
    """Stereo AUDIO: 440 Hz at 0.5 on the left, 220 Hz at 0.25 on the right."""
    t = torch.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    waveform = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.25 * torch.sin(2 * math.pi * 220 * t)])
    return {"waveform": waveform[None], "sample_rate": SAMPLE_RATE}


def frame_indices(frames: torch.Tensor) -> list[int]:
    """Which gray_frames() frame each decoded frame is."""
    return [round((frame.mean().item() - 0.05) * 10) for frame in frames]


def test_round_trip_keeps_count_rate_size_pixels_and_audio(tmp_path):
    frames, audio = gradient_frames(), two_tones(9 / FPS)
    path = write_video(tmp_path / "clip.mp4", frames, FPS, audio=audio)
    clip = read_video(path)

    assert clip.frames.shape == (9, 48, 64, 3) and clip.frames.dtype == torch.float32
    assert (clip.fps, clip.width, clip.height) == (FPS, 64, 48)
    error = (clip.frames - frames).abs()
    assert error.mean() < MEAN_TOLERANCE and error.max() < MAX_TOLERANCE
    assert clip.audio["sample_rate"] == SAMPLE_RATE and clip.audio["waveform"].shape[:2] == (1, 2)
    assert abs(clip.audio["waveform"].shape[-1] - audio["waveform"].shape[-1]) <= AAC_FRAME
    # AAC is lossy and smears the first/last codec frames; the middle of a pure tone survives closely.
    middle = slice(4000, 14000)
    assert (clip.audio["waveform"][..., middle] - audio["waveform"][..., middle]).abs().max() < 0.01
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.format.name) == ("h264", "yuv420p")
        assert container.streams.audio[0].codec_context.name == "aac"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "faststart: the index must precede the media data"


def test_saturated_colors_survive_bt709_tagging(tmp_path):
    colors = torch.tensor([[0.8, 0.1, 0.3], [0.1, 0.8, 0.2], [0.2, 0.1, 0.8], [0.9, 0.8, 0.1]])
    frames = colors[:, None, None, :].expand(4, 48, 64, 3).contiguous()
    path = write_video(tmp_path / "colors.mp4", frames, FPS)
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_primaries, context.color_trc, context.color_range) == (1, 1, 1, 1)
    # Measured max error 0.008; decoding this BT.709 data as BT.601 is off by up to 0.106.
    assert (read_video(path).frames - frames).abs().max() < 0.025


def test_non_integer_rate_survives(tmp_path):
    clip = read_video(write_video(tmp_path / "ntsc.mp4", gradient_frames(3), 30000 / 1001))
    assert clip.fps == pytest.approx(30000 / 1001, rel=1e-9)


def test_odd_size_is_padded_with_edge_pixels(tmp_path, caplog):
    frames = gradient_frames(height=47, width=63)
    with caplog.at_level(logging.INFO, logger="videosdgx.media.video"):
        clip = read_video(write_video(tmp_path / "odd.mp4", frames, FPS))
    assert "Padding 63x47 to 64x48" in caplog.text
    assert (clip.width, clip.height) == (64, 48)
    error = (clip.frames[:, :47, :63] - frames).abs()
    assert error.mean() < MEAN_TOLERANCE and error.max() < MAX_TOLERANCE

    # A white last column and row on dark gray: edge padding repeats them (zero or mirror padding would not).
    framed = torch.full((2, 47, 63, 3), 0.3)
    framed[:, :, -1] = framed[:, -1, :] = 1.0
    padded = read_video(write_video(tmp_path / "framed.mp4", framed, FPS)).frames
    assert padded[:, :, 62:].min() > 0.9 and padded[:, 46:, :].min() > 0.9
    assert (padded[:, 10:36, 10:52] - 0.3).abs().max() < 0.02


def test_alpha_is_dropped_not_blended(tmp_path):
    rgb = gradient_frames()
    rgba = torch.cat([rgb, torch.zeros_like(rgb[..., :1])], dim=-1)
    clip = read_video(write_video(tmp_path / "alpha.mp4", rgba, FPS))
    assert clip.frames.shape[-1] == 3
    assert (clip.frames - rgb).abs().mean() < MEAN_TOLERANCE


def test_out_of_range_values_are_clamped(tmp_path):
    frames = torch.full((2, 48, 64, 3), 2.0)
    frames[:, :, :32] = -1.0
    clip = read_video(write_video(tmp_path / "clamp.mp4", frames, FPS))
    assert clip.frames[:, :, :24].max() < 0.02 and clip.frames[:, :, 40:].min() > 0.98


def test_without_h264_falls_back_to_mpeg4_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(video_module, "_has_encoder", lambda name: name == "mpeg4")
    assert available_h264_encoder() is None
    frames = gradient_frames()
    with caplog.at_level(logging.WARNING, logger="videosdgx.media.video"):
        clip = read_video(write_video(tmp_path / "fallback.mp4", frames, FPS))

    assert "encoding with mpeg4" in caplog.text and "pip install" in caplog.text and "libx264" in caplog.text
    with av.open(str(tmp_path / "fallback.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert clip.frames.shape == (9, 48, 64, 3) and clip.fps == FPS
    error = (clip.frames - frames).abs()
    assert error.mean() < MEAN_TOLERANCE and error.max() < MAX_TOLERANCE


def test_other_h264_encoder_is_preferred_over_mpeg4(monkeypatch):
    monkeypatch.setattr(video_module, "_has_encoder", lambda name: name in ("libopenh264", "mpeg4"))
    assert available_h264_encoder() == "libopenh264"


def test_no_encoder_at_all_raises_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(video_module, "_has_encoder", lambda name: False)
    with pytest.raises(VideosDGXError, match="no video encoder.*libx264"):
        write_video(tmp_path / "none.mp4", gradient_frames(), FPS)
    assert list(tmp_path.iterdir()) == []


def test_a_crash_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"previous result")

    def crash_after_the_video_is_muxed(container, stream, samples, sample_rate):
        assert [p.name.endswith(".partial") for p in sorted(tmp_path.iterdir())] == [True, False]
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(video_module, "encode_audio", crash_after_the_video_is_muxed)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_video(target, gradient_frames(), FPS, audio=two_tones(0.5))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]
    assert target.read_bytes() == b"previous result"


@pytest.mark.parametrize(
    ("frames", "fps", "message"),
    [
        (torch.zeros(0, 48, 64, 3), FPS, "empty"),
        (torch.zeros(48, 64, 3), FPS, r"\[frames, height, width, 3 or 4\], got \(48, 64, 3\)"),
        (torch.zeros(2, 48, 64, 2), FPS, r"got \(2, 48, 64, 2\)"),
        (torch.zeros(2, 48, 64, 3, dtype=torch.uint8), FPS, "float in 0..1"),
        (torch.full((2, 48, 64, 3), float("nan")), FPS, "NaN"),
        (torch.zeros(2, 48, 64, 3), 0, "fps must be a positive number"),
    ],
)
def test_bad_frames_or_fps_are_refused_naming_the_file(tmp_path, frames, fps, message):
    path = tmp_path / "bad.mp4"
    with pytest.raises(VideosDGXError, match=message) as error:
        write_video(path, frames, fps)
    assert str(path) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_audio_is_refused(tmp_path):
    with pytest.raises(VideosDGXError, match=r"\[batch, channels, samples\], got \(2, 99\)"):
        unbatched = {"waveform": torch.zeros(2, 99), "sample_rate": SAMPLE_RATE}
        write_video(tmp_path / "a.mp4", gradient_frames(2), FPS, audio=unbatched)
    with pytest.raises(ConfigurationError, match="only mono or stereo"):
        write_audio(tmp_path / "a.wav", {"waveform": torch.zeros(1, 3, 100), "sample_rate": 8000})
    with pytest.raises(ConfigurationError, match=r"\.wav or \.flac"):
        write_audio(tmp_path / "a.ogg", two_tones(0.1))


@pytest.mark.parametrize("reader", [read_video, read_audio])
def test_missing_file_is_named(tmp_path, reader):
    path = tmp_path / "nowhere" / "missing.mp4"
    with pytest.raises(VideosDGXError, match="not found") as error:
        reader(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("reader", [read_video, read_audio])
def test_text_file_renamed_mp4_is_named(tmp_path, reader):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideosDGXError, match="not a video or audio file") as error:
        reader(path)
    assert str(path) in str(error.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = write_audio(tmp_path / "voice.wav", two_tones(0.2))
    with pytest.raises(VideosDGXError, match="no video stream") as error:
        read_video(path)
    assert str(path) in str(error.value)


def test_video_without_audio_reads_audio_as_none_and_read_audio_refuses(tmp_path):
    path = write_video(tmp_path / "silent.mp4", gradient_frames(2), FPS)
    assert read_video(path).audio is None
    with pytest.raises(VideosDGXError, match="no audio track"):
        read_audio(path)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_audio_round_trip_is_16_bit_exact(tmp_path, suffix):
    audio = two_tones(0.5)
    back = read_audio(write_audio(tmp_path / f"tones{suffix}", audio))
    assert back["sample_rate"] == SAMPLE_RATE and back["waveform"].shape == (1, 2, 8000)
    assert (back["waveform"] - audio["waveform"]).abs().max() <= 1 / 32768


def test_read_audio_resamples_and_mixes_to_mono(tmp_path):
    audio = two_tones(0.5)
    path = write_audio(tmp_path / "tones.wav", audio)

    down = read_audio(path, sample_rate=8000)
    t = torch.arange(4000) / 8000
    expected = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.25 * torch.sin(2 * math.pi * 220 * t)])
    assert down["sample_rate"] == 8000 and down["waveform"].shape == (1, 2, 4000)
    # The resampling filter only disturbs the first/last few samples (measured interior error 9e-5).
    assert (down["waveform"][0, :, 100:-100] - expected[:, 100:-100]).abs().max() < 1e-3

    up = read_audio(path, sample_rate=44100)
    assert up["sample_rate"] == 44100 and abs(up["waveform"].shape[-1] - 8000 * 44100 / SAMPLE_RATE) <= 1

    mono = read_audio(path, mono=True)
    assert mono["waveform"].shape == (1, 1, 8000)
    assert (mono["waveform"][0, 0] - audio["waveform"][0].mean(0)).abs().max() <= 1 / 32768


def test_read_audio_from_the_aac_track_of_a_video(tmp_path):
    path = write_video(tmp_path / "clip.mp4", gray_frames(), FPS, audio=two_tones(9 / FPS))
    mono = read_audio(path, sample_rate=22050, mono=True)
    assert mono["sample_rate"] == 22050 and mono["waveform"].shape[:2] == (1, 1)
    assert abs(mono["waveform"].shape[-1] - 18000 * 22050 / SAMPLE_RATE) <= AAC_FRAME


def test_read_video_selects_frames_and_cuts_audio_to_match(tmp_path):
    audio = two_tones(9 / FPS)
    path = write_video(tmp_path / "gray.mp4", gray_frames(), FPS, audio=audio)
    assert frame_indices(read_video(path).frames) == list(range(9))

    clip = read_video(path, start_frame=1, every_nth=3, max_frames=2)
    assert frame_indices(clip.frames) == [1, 4] and clip.fps == pytest.approx(FPS / 3)
    # Kept frames 1 and 4 span frames 1..6, i.e. 1/8 s to 7/8 s: samples 2000..14000 of the track.
    assert clip.audio["waveform"].shape == (1, 2, 12000)
    middle = slice(2000, 10000)
    assert (clip.audio["waveform"][..., middle] - audio["waveform"][..., 2000:14000][..., middle]).abs().max() < 0.01

    tail = read_video(path, start_frame=2, every_nth=4)
    assert frame_indices(tail.frames) == [2, 6] and tail.fps == FPS / 4
    assert tail.audio["waveform"].shape[-1] == 18000 - 4000

    head = read_video(path, max_frames=3)
    assert frame_indices(head.frames) == [0, 1, 2] and head.audio["waveform"].shape[-1] == 6000


def test_read_video_refuses_impossible_selections(tmp_path):
    path = write_video(tmp_path / "gray.mp4", gray_frames(3), FPS)
    with pytest.raises(ConfigurationError, match="3 video frames; start_frame=5 is past the end"):
        read_video(path, start_frame=5)
    with pytest.raises(ConfigurationError, match="every_nth=0"):
        read_video(path, every_nth=0)
