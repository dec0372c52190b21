"""SkyReels V3 avatar: our wav2vec2 encoder against transformers' Wav2Vec2Model, the audio projector and the
avatar DiT against the official modules' outputs (tests/reference/skyreels_v3); fp32, tiny, random weights."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import Wav2Vec2Config as HFConfig
from transformers import Wav2Vec2Model

from videosdgx.media.audio import write_audio
from videosdgx.runtime.errors import ConfigurationError, VideosDGXError, WrongComponentError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.skyreels_v3 import wav2vec2
from videosdgx.skyreels_v3.audio import (audio_windows, integrated_loudness, load_speech, normalize_loudness,
                                         speech_features)
from videosdgx.skyreels_v3.avatar import AvatarConfig, AvatarModel, avatar_config_from_shapes
from videosdgx.skyreels_v3.loaders import load_avatar_dit, load_wav2vec2
from videosdgx.skyreels_v3.wav2vec2 import Wav2Vec2Encoder, config_from_shapes, wav2vec2_key
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.skyreels_v3 import seeded_weights
from videosdgx.wan.transformer import WanConfig

REFERENCE = Path(__file__).parent / "reference" / "skyreels_v3"
sys.path.insert(0, str(REFERENCE))
import tiny  # noqa: E402

HF_TINY = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=80,
               conv_dim=(24, 24, 24, 20), conv_kernel=(10, 3, 3, 2), conv_stride=(5, 2, 2, 2),
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="group",
               do_stable_layer_norm=False)


@pytest.fixture(scope="module")
def pair():
    """transformers' model with random weights (incl. norms), and ours built from its state dict via the key map."""
    torch.manual_seed(0)
    reference = Wav2Vec2Model(HFConfig(**HF_TINY)).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.2 * noise)
            elif name.endswith("bias") or name.endswith("original0"):
                param.copy_(0.2 * noise + (1.0 if name.endswith("original0") else 0.0))
            else:
                param.copy_(noise / max(1, param[0].numel()) ** 0.5)
    state = {wav2vec2_key(k): v for k, v in reference.state_dict().items() if wav2vec2_key(k)}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    ours = Wav2Vec2Encoder(config_from_shapes(shapes, heads=3)).eval()
    ours.load_state_dict(state, strict=True)
    return reference, ours


@pytest.mark.parametrize("limit", [None, 1000], ids=["whole", "chunked-convs"])
def test_hidden_states_match_transformers(pair, limit, monkeypatch):
    reference, ours = pair
    if limit:  # every conv layer in several calls, the last one short
        monkeypatch.setattr(wav2vec2, "CONV_INPUT_LIMIT", limit)
    waveform = torch.randn(2, 3200, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(waveform, output_hidden_states=True).hidden_states
        got = ours(waveform)
    assert len(got) == len(expected) == 4
    for layer, (a, b) in enumerate(zip(got, expected)):
        assert (a - b).abs().max().item() <= 1e-5 * b.abs().max().item(), layer


@pytest.mark.parametrize("n_in,kernel,stride,samples", [(1, 10, 5, 3203), (6, 3, 2, 101), (6, 2, 2, 100)])
def test_convolution_in_chunks_is_bit_identical(n_in, kernel, stride, samples):
    conv = torch.nn.Conv1d(n_in, 5, kernel, stride=stride, bias=False)
    x = torch.randn(2, n_in, samples, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = conv(x)
        for limit in (1, 100, x.numel() - 1, x.numel()):  # one output frame a call ... one call
            assert torch.equal(wav2vec2.conv_in_chunks(conv, x, limit), expected), limit


def test_features_resampled_to_video_frames_as_skyreels(pair):
    """SkyReels resamples the conv features (linear, aligned corners) to one row per 25 fps frame first."""
    reference, ours = pair
    waveform = torch.randn(1, 16000, generator=torch.Generator().manual_seed(3))  # 1 s: 25 frames
    convs = reference.feature_extractor.forward
    reference.feature_extractor.forward = lambda x: F.interpolate(convs(x), size=25, mode="linear", align_corners=True)
    try:
        with torch.no_grad():
            expected = reference(waveform, output_hidden_states=True).hidden_states
            got = ours(waveform, frames=25)
    finally:
        reference.feature_extractor.forward = convs
    assert got[-1].shape == (1, 25, 48)
    for a, b in zip(got, expected):
        assert (a - b).abs().max().item() <= 1e-5 * b.abs().max().item()


def test_keys_of_older_files_and_pretraining_heads():
    assert wav2vec2_key("wav2vec2.encoder.pos_conv_embed.conv.weight_g") == "encoder.pos_conv_embed.conv.weight_g"
    assert wav2vec2_key("encoder.pos_conv_embed.conv.parametrizations.weight.original1") == \
        "encoder.pos_conv_embed.conv.weight_v"
    assert wav2vec2_key("quantizer.codevectors") is None and wav2vec2_key("masked_spec_embed") is None


def test_avatar_dit_and_audio_projector_match_official():
    """transformer_a2v.WanModel (tests/reference/skyreels_v3): the projector's window split, the audio tokens and
    the whole DiT with per-frame audio cross-attention."""
    reference = load_file(str(REFERENCE / "a2v.safetensors"))
    shapes = {k: tuple(v.shape) for k, v in meta_avatar().state_dict().items()}
    model = AvatarModel(avatar_config_from_shapes(shapes)).eval()
    model.load_state_dict(seeded_weights(shapes, tiny.AVATAR_SEED), strict=True)
    inputs = tiny.avatar_inputs()
    with torch.no_grad():
        tokens = model.audio_proj(inputs["audio"])
        out = model(inputs["noisy"], inputs["t"], inputs["text"][None], inputs["clip"], inputs["y"],
                    audio=inputs["audio"])
    for got, expected in ((tokens, reference["audio_tokens"]), (out, reference["avatar_out"])):
        assert got.shape == expected.shape
        assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-4
    with torch.no_grad():  # the audio matters
        silent = model(inputs["noisy"], inputs["t"], inputs["text"][None], inputs["clip"], inputs["y"],
                       audio=torch.zeros_like(inputs["audio"]))
    assert (silent - out).abs().max() > 1e-3


def meta_avatar() -> AvatarModel:
    wan = WanConfig(dim=256, ffn_dim=192, num_heads=2, num_layers=2, in_dim=36, out_dim=16, model_type="i2v",
                    has_image_branch=True, text_dim=tiny.TEXT_DIM, freq_dim=64)
    with torch.device("meta"):
        return AvatarModel(AvatarConfig(wan=wan, intermediate_dim=16, audio_dim=32, context_tokens=4))


# Integrated loudness of three deterministic signals by pyloudnorm 0.2.0 (`Meter(16000).integrated_loudness`),
# run in a scratch venv (numpy 2.4, scipy 1.17): the reference the release normalises with.
PYLOUDNORM_LUFS = (-13.10691362876286, -13.445260601491233, -14.475540545208407)


def loudness_signals() -> list[torch.Tensor]:
    rate = 16000
    t = torch.arange(3 * rate, dtype=torch.float64) / rate
    one = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.1 * torch.sin(2 * torch.pi * 3000 * t) \
        + 0.05 * torch.sin(2 * torch.pi * 60 * t)
    t2 = torch.arange(2 * rate, dtype=torch.float64) / rate
    two = torch.cat([one[: 2 * rate], 0.001 * torch.sin(2 * torch.pi * 1000 * t2)])  # quiet tail: gated out
    t3 = torch.arange(int(1.3 * rate), dtype=torch.float64) / rate
    return [one, two, 0.2 * torch.sin(2 * torch.pi * (100 + 2000 * t3) * t3)]


def test_loudness_matches_pyloudnorm_and_normalises_to_minus_23():
    for signal, expected in zip(loudness_signals(), PYLOUDNORM_LUFS):
        assert abs(integrated_loudness(signal) - expected) <= 1e-6
        assert abs(integrated_loudness(normalize_loudness(signal)) + 23) <= 1e-6
    silence = torch.zeros(16000, dtype=torch.float64)
    assert torch.equal(normalize_loudness(silence), silence)


def test_speech_from_a_file_or_audio_dict_at_any_rate(tmp_path):
    t = torch.arange(44100) / 44100
    stereo = torch.stack([torch.sin(2 * torch.pi * 220 * t), 0.5 * torch.sin(2 * torch.pi * 330 * t)])[None] * 0.5
    audio = {"waveform": stereo.float(), "sample_rate": 44100}
    from_dict = load_speech(audio)
    from_file = load_speech(write_audio(tmp_path / "speech.wav", audio))
    assert from_dict.shape[0] == pytest.approx(16000, abs=40) and from_file.shape[0] == pytest.approx(16000, abs=40)
    assert abs(integrated_loudness(from_dict) + 23) < 1e-6


@pytest.mark.parametrize("seconds, message", [(0.2, "lasts 0.20 s; the avatar needs at least 0.4 s"),
                                              (3.0, "lasts 3.0 s; SkyReels V3 A2V makes at most 2 s")])
def test_too_short_or_too_long_speech_is_refused(seconds, message):
    audio = {"waveform": torch.full((1, 1, int(seconds * 16000)), 0.1), "sample_rate": 16000}
    with pytest.raises(ConfigurationError, match=message):
        load_speech(audio, max_seconds=2)
    with pytest.raises(VideosDGXError, match="empty"):
        load_speech({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000})


def test_features_at_25_per_second_in_windows_of_5(pair):
    _, encoder = pair
    speech = load_speech({"waveform": torch.randn(1, 1, 8000, generator=torch.Generator().manual_seed(4)) * 0.1,
                          "sample_rate": 16000})
    features = speech_features(encoder, speech)
    assert features.shape == (13, 3, 48)  # ceil(0.5 s * 25), every layer but the input, width
    windows = audio_windows(features, 0, 5)
    assert windows.shape == (1, 5, 5, 3, 48)
    assert torch.equal(windows[0, 0, 0], features[0]) and torch.equal(windows[0, 0, 4], features[2])
    assert torch.equal(windows[0, 3, 2], features[3])
    assert torch.equal(audio_windows(features, 10, 13)[0, 2, 4], features[12])  # clamped at the end


def test_files_load_through_identification(tmp_path):
    """wav2vec2 (pre-training layout, `wav2vec2.` prefix, new weight-norm names) and the A2V DiT from files."""
    torch.manual_seed(5)
    reference = Wav2Vec2Model(HFConfig(**{**HF_TINY, "hidden_size": 128, "num_attention_heads": 2})).eval()
    stored = {"wav2vec2." + k: v for k, v in reference.state_dict().items()}
    stored["quantizer.codevectors"] = torch.zeros(1, 4, 8)  # a pre-training head the encoder ignores
    w2v_path = save_safetensors(tmp_path / "chinese-wav2vec2-base.safetensors", stored)
    loaded = load_wav2vec2(w2v_path, LoadRequest())
    assert loaded.identity.family == "skyreels_v3" and "wav2vec 2.0 (3 layers, width 128)" in loaded.identity.variant
    waveform = torch.randn(1, 4000, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected, got = reference(waveform).last_hidden_state, loaded.module.eval()(waveform)[-1]
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()

    shapes = {k: tuple(v.shape) for k, v in meta_avatar().state_dict().items()}
    a2v_path = save_safetensors(tmp_path / "a2v.safetensors", seeded_weights(shapes, tiny.AVATAR_SEED))
    model = load_avatar_dit(a2v_path, LoadRequest()).module.eval()
    inputs, reference_out = tiny.avatar_inputs(), load_file(str(REFERENCE / "a2v.safetensors"))["avatar_out"]
    with torch.no_grad():
        out = model(inputs["noisy"], inputs["t"], inputs["text"][None], inputs["clip"], inputs["y"],
                    audio=inputs["audio"])
    assert (out - reference_out).abs().max() <= 1e-4 * reference_out.abs().max()
    with pytest.raises(WrongComponentError, match="is a wav2vec 2.0 .* not a SkyReels V3 transformer"):
        load_avatar_dit(w2v_path, LoadRequest())
