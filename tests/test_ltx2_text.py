"""LTX-2 text side: Gemma 3 vs transformers, tokenizer vs transformers, projection + connectors vs diffusers
(19B and 2.3 flavours), every published file layout through the real loaders, and bad inputs (CPU, fp32)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import transformers
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors

from videosdgx.ltx2.text_conditioner import load_text_conditioner
from videosdgx.ltx2.text_encoder import LTX2TextEncoder, load_ltx2_text_encoder
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import CheckpointError, ConfigurationError, WrongComponentError
from videosdgx.runtime.identify import identify
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.runtime.quantized_linear import QuantizedLinear
from videosdgx.testing import ltx2_text as fx
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.layouts import gemma3_comfy
from videosdgx.text.gemma3 import Gemma3Config, Gemma3TextModel
from videosdgx.text.gemma3_files import load_gemma3
from videosdgx.text.gemma3_tokenizer import load_gemma3_tokenizer

REQUEST = LoadRequest()
DEFAULTS = Gemma3Config()  # Gemma 3 12B attention settings, used when no config.json is next to the file
PROMPTS = ["A cat sits on a red boat.", "  一只猫坐在板上  ",
           "Camera pans slowly over a quiet harbour full of yachts while a woman speaks softly to the camera and "
           "rain falls behind her."]


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).abs().max() / ref.abs().max()).item()


def hf_gemma(cfg: Gemma3Config, state: dict[str, torch.Tensor]) -> transformers.Gemma3TextModel:
    config = transformers.Gemma3TextConfig(**fx.hf_text_config(cfg), max_position_embeddings=64,
                                           attn_implementation="eager")
    model = transformers.Gemma3TextModel(config).eval()
    model.load_state_dict(state)
    return model


def left_padded_inputs(vocab: int, length: int = 12, valid: tuple[int, ...] = (12, 5)) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (len(valid), length), generator=generator)
    mask = torch.zeros(len(valid), length, dtype=torch.long)
    for row, n in enumerate(valid):
        mask[row, length - n:] = 1
        ids[row, : length - n] = 0
    return ids, mask


def compare_hidden_states(ours: list[torch.Tensor], ref: tuple[torch.Tensor, ...], mask: torch.Tensor) -> float:
    assert len(ours) == len(ref)
    valid = mask.bool()
    return max(relative_error(o[valid], r[valid]) for o, r in zip(ours, ref))


# ----------------------------------------------------------------------------------------------------------------
# Gemma 3


@pytest.mark.parametrize("layout", ["comfy", "hf", "hf_new"])
def test_gemma3_matches_transformers(tmp_path, layout):
    """Loaded through the real loader; HF layouts carry config.json (window 4 < 12 tokens, global every 3rd layer),
    the ComfyUI file gets Gemma 3 12B's settings."""
    path = fx.write_gemma3(tmp_path / ("gemma.safetensors" if layout == "comfy" else "gemma"), layout)
    loaded = load_gemma3(path, REQUEST)
    cfg = loaded.module.cfg
    expected = fx.TINY_GEMMA if layout != "comfy" else replace(
        fx.TINY_GEMMA, sliding_window=DEFAULTS.sliding_window, sliding_pattern=DEFAULTS.sliding_pattern,
        query_pre_attn_scalar=DEFAULTS.query_pre_attn_scalar)
    assert cfg == expected
    assert loaded.identity.variant == "Gemma 3 (6 layers)"
    reference = hf_gemma(cfg, fx.gemma3_state())
    ids, mask = left_padded_inputs(cfg.vocab)
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        ours = loaded.module(ids, mask)
    assert compare_hidden_states(ours, ref, mask) <= 1e-5
    assert all(torch.isfinite(s).all() for s in ours)


def test_gemma3_sliding_window_is_exercised():
    """The same weights with a window wider than the prompt give clearly different states: the window matters."""
    state = fx.gemma3_state()
    reference = hf_gemma(fx.TINY_GEMMA, state)
    wide = Gemma3TextModel(replace(fx.TINY_GEMMA, sliding_window=64)).eval()
    wide.load_state_dict(state)
    ids, mask = left_padded_inputs(fx.TINY_GEMMA.vocab)
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        assert compare_hidden_states(wide(ids, mask), ref, mask) > 1e-2


@pytest.mark.parametrize("storage", ["fp8_scaled", "fp8_e4m3fn", "fp4_mixed", "bf16"])
def test_gemma3_quantized_and_bf16_files(tmp_path, storage):
    """fp8 / NVFP4 Linear weights stay quantised (runtime QuantizedLinear) and give the states of their
    dequantised weights."""
    path = fx.write_gemma3(tmp_path / f"gemma_3_12B_it_{storage}.safetensors", "comfy", storage)
    model = load_gemma3(path, REQUEST).module
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert len(quantized) == (7 * fx.TINY_GEMMA.layers if storage != "bf16" else 0)
    assert {m.format for m in quantized} == {"bf16": set(), "fp4_mixed": {"fp8", "nvfp4"}}.get(storage, {"fp8"})
    dense = Gemma3TextModel(model.cfg).eval()
    names = dense.state_dict().keys()
    dequantized = {f"{name}.weight": m.dequantized_weight(torch.float32)
                   for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    dense.load_state_dict({k: v for k, v in model.state_dict().items() if k in names} | dequantized)
    ids, mask = left_padded_inputs(fx.TINY_GEMMA.vocab)
    with torch.no_grad():
        got, ref = model(ids, mask), dense(ids, mask)
    assert compare_hidden_states(got, tuple(ref), mask) <= 1e-6


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer


def test_gemma_tokenizer_matches_transformers(tmp_path):
    folder = fx.write_gemma_tokenizer(tmp_path / "tokenizer")
    reference = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"), bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", padding_side="left")
    expected = reference([p.strip() for p in PROMPTS], padding="max_length", max_length=24, truncation=True,
                         return_tensors="pt")
    proto = (folder / "tokenizer.model").read_bytes()
    sources = [folder, folder / "tokenizer.json", folder / "tokenizer.model", proto,
               torch.frombuffer(bytearray(proto), dtype=torch.uint8)]
    for source in sources:
        ids, mask = load_gemma3_tokenizer(source).encode(PROMPTS, max_length=24)
        assert torch.equal(ids, expected["input_ids"]), source
        assert torch.equal(mask, expected["attention_mask"]), source
    assert mask[2].all() and ids[2, 0] == 2  # the long prompt is cut, <bos> kept first
    assert (ids[0, mask[0] == 0] == 0).all() and ids[0, (mask[0] == 0).sum()] == 2  # left padding, then <bos>


def test_gemma_tokenizer_bad_sources(tmp_path):
    with pytest.raises(CheckpointError, match="neither tokenizer.json nor tokenizer.model"):
        load_gemma3_tokenizer(tmp_path)
    t5 = transformers.T5TokenizerFast(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("a", -1.0)],
                                      extra_ids=0)
    t5.save_pretrained(tmp_path / "t5")
    with pytest.raises(CheckpointError, match="no `<bos>` or `<pad>` token: it is not a Gemma 3 tokenizer"):
        load_gemma3_tokenizer(tmp_path / "t5" / "tokenizer.json")


# ----------------------------------------------------------------------------------------------------------------
# Text projection + embeddings connectors


DIFFUSERS_NAMES = [
    ("model.diffusion_model.", ""), ("text_embedding_projection.video_aggregate_embed", "video_text_proj_in"),
    ("text_embedding_projection.audio_aggregate_embed", "audio_text_proj_in"),
    ("text_embedding_projection.aggregate_embed", "text_proj_in"), ("video_embeddings_connector.", "video_connector."),
    ("audio_embeddings_connector.", "audio_connector."), ("transformer_1d_blocks.", "transformer_blocks."),
    (".q_norm.", ".norm_q."), (".k_norm.", ".norm_k."),
]


def to_diffusers(name: str) -> str:
    for old, new in DIFFUSERS_NAMES:
        name = name.replace(old, new)
    return name


def diffusers_connectors(flavour: str) -> LTX2TextConnectors:
    cfg = fx.conditioner_config(flavour)
    model = LTX2TextConnectors(
        caption_channels=cfg.hidden, text_proj_in_factor=cfg.layers,
        video_connector_num_attention_heads=cfg.video.heads, video_connector_attention_head_dim=cfg.video.head_dim,
        video_connector_num_layers=cfg.video.layers, video_connector_num_learnable_registers=cfg.video.registers,
        video_gated_attn=cfg.video.gated, audio_connector_num_attention_heads=cfg.audio.heads,
        audio_connector_attention_head_dim=cfg.audio.head_dim, audio_connector_num_layers=cfg.audio.layers,
        audio_connector_num_learnable_registers=cfg.audio.registers, audio_gated_attn=cfg.audio.gated,
        connector_rope_base_seq_len=4096, rope_theta=10000.0, rope_double_precision=True, rope_type="split",
        per_modality_projections=cfg.per_modality, video_hidden_dim=cfg.video.dim, audio_hidden_dim=cfg.audio.dim,
        proj_bias=cfg.per_modality,
    ).eval()
    model.load_state_dict({to_diffusers(k): v for k, v in fx.text_side_state(cfg).items()})
    return model


def gemma_like_states(layers: int, valid: tuple[int, ...] = (12, 5), length: int = 12) -> tuple[list, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    states = [torch.randn(len(valid), length, fx.TINY_GEMMA.hidden, generator=generator) * (1 + i)
              for i in range(layers)]
    mask = torch.zeros(len(valid), length, dtype=torch.long)
    for row, n in enumerate(valid):
        mask[row, length - n:] = 1
    return states, mask


@pytest.mark.parametrize("flavour", ["19b", "2.3"])
@pytest.mark.parametrize("source", ["checkpoint", "separate file"])
def test_conditioner_matches_diffusers(tmp_path, flavour, source):
    cfg = fx.conditioner_config(flavour)
    if source == "checkpoint":
        path = fx.write_ltx2_checkpoint(tmp_path / "ltx-2-19b-dev.safetensors", cfg)
    else:  # like ltx-2-19b-dev-fp4_projections_only.safetensors, connector keys without the DiT prefix
        path = fx.write_text_side(tmp_path / "projections_only.safetensors", cfg, with_dit_prefix=False)
    settings = None if source == "checkpoint" else json.loads(fx.conditioner_metadata(cfg)["config"])["transformer"]
    loaded = load_text_conditioner(path, REQUEST, fx.TINY_GEMMA.hidden, settings)
    assert loaded.module.cfg == cfg
    assert loaded.identity.component == ("checkpoint" if source == "checkpoint" else "text projection")
    states, mask = gemma_like_states(cfg.layers)
    with torch.no_grad():
        video, audio, out_mask = loaded.module(states, mask)
        ref_video, ref_audio, ref_mask = diffusers_connectors(flavour)(torch.stack(states, -1), mask)
    assert video.shape == (2, 12, cfg.video.dim) and audio.shape == (2, 12, cfg.audio.dim)
    assert relative_error(video, ref_video) <= 1e-5 and relative_error(audio, ref_audio) <= 1e-5
    assert torch.equal(out_mask, ref_mask.long()) and out_mask.all()


# ----------------------------------------------------------------------------------------------------------------
# The whole encoder


@pytest.fixture()
def text_files(tmp_path):
    tokenizer = fx.write_gemma_tokenizer(tmp_path / "tokenizer")
    gemma = fx.write_gemma3(tmp_path / "gemma_3_12B_it_fp8_scaled.safetensors", "comfy", "fp8_scaled",
                            spiece=(tokenizer / "tokenizer.model").read_bytes())
    checkpoint = fx.write_ltx2_checkpoint(tmp_path / "ltx-2.3-22b-dev.safetensors", fx.conditioner_config("2.3"))
    return tmp_path, gemma, checkpoint


def test_encode_matches_transformers_and_diffusers(text_files):
    """Tokenizer -> Gemma (fp8 file) -> projection -> connectors against transformers + diffusers end to end."""
    root, gemma, checkpoint = text_files
    encoder = load_ltx2_text_encoder(gemma, checkpoint, REQUEST, max_length=16)
    video, audio, mask = encoder.encode(PROMPTS)
    assert video.shape == (3, 16, 24) and audio.shape == (3, 16, 12) and mask.shape == (3, 16)

    reference_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(root / "tokenizer" / "tokenizer.json"), bos_token="<bos>", pad_token="<pad>",
        padding_side="left")
    tokens = reference_tokenizer([p.strip() for p in PROMPTS], padding="max_length", max_length=16, truncation=True,
                                 return_tensors="pt")
    dense = {k: v for k, v in encoder.gemma.state_dict().items() if "scale" not in k and "comfy_quant" not in k}
    dense |= {f"{n}.weight": m.dequantized_weight(torch.float32)
              for n, m in encoder.gemma.named_modules() if isinstance(m, QuantizedLinear)}
    cfg = replace(fx.TINY_GEMMA, sliding_window=DEFAULTS.sliding_window, sliding_pattern=DEFAULTS.sliding_pattern,
                  query_pre_attn_scalar=DEFAULTS.query_pre_attn_scalar)
    with torch.no_grad():
        states = hf_gemma(cfg, dense)(**tokens, output_hidden_states=True).hidden_states
        ref_video, ref_audio, _ = diffusers_connectors("2.3")(torch.stack(states, -1), tokens["attention_mask"])
    assert relative_error(video, ref_video) <= 1e-5 and relative_error(audio, ref_audio) <= 1e-5

    encoder.release()
    assert encoder.released
    again = encoder.encode(PROMPTS)  # Gemma is loaded again from its file
    assert not encoder.released and torch.equal(again.video, video)
    encoder.release()
    encoder.reload = None
    with pytest.raises(ConfigurationError, match="Gemma model was released; load the text encoder again"):
        encoder.encode(["a cat"])


# ----------------------------------------------------------------------------------------------------------------
# Identification and bad inputs


def test_identification(tmp_path):
    cfg = fx.conditioner_config("19b")
    with open_checkpoint(fx.write_text_side(tmp_path / "p.safetensors", cfg)) as checkpoint:
        found = identify(checkpoint)
    assert (found.family, found.component, found.variant) == ("ltx2", "text projection", "LTX-2")
    assert found.notes == ("contains: text projection, video connector, audio connector",)
    with open_checkpoint(fx.write_text_side(tmp_path / "c.safetensors", fx.conditioner_config("2.3"),
                                            parts=("connectors",))) as checkpoint:
        assert identify(checkpoint).variant == "LTX-2.3"
    with open_checkpoint(fx.write_gemma3(tmp_path / "g", "hf_new")) as checkpoint:
        assert (identify(checkpoint).variant, identify(checkpoint).layout) == ("Gemma 3 (6 layers)", "HF")


def test_wrong_files_are_refused(tmp_path, text_files):
    _, gemma, checkpoint = text_files
    with pytest.raises(WrongComponentError, match="ltx-2.3-22b-dev.safetensors is a LTX-2.3 .* not a text encoder"):
        load_ltx2_text_encoder(checkpoint, checkpoint, REQUEST)
    with pytest.raises(WrongComponentError,
                       match="is a Gemma 3 \\(6 layers\\) text encoder, not a LTX-2 text projection"):
        load_ltx2_text_encoder(gemma, gemma, REQUEST)
    gemma2 = {k: v for k, v in gemma3_comfy().items() if "q_norm" not in k}
    path = save_safetensors(tmp_path / "gemma-2-9b.safetensors", gemma2)
    with pytest.raises(WrongComponentError, match="gemma-2-9b.safetensors is a Gemma 2 text model .* not Gemma 3"):
        load_ltx2_text_encoder(path, checkpoint, REQUEST)


def test_truncated_gemma_file(tmp_path, text_files):
    _, gemma, checkpoint = text_files
    size = gemma.stat().st_size
    cut = tmp_path / "gemma_3_12B_it_cut.safetensors"
    cut.write_bytes(gemma.read_bytes()[: size // 2])
    with pytest.raises(CheckpointError, match=f"is truncated: expected {size:,} bytes"):
        load_ltx2_text_encoder(cut, checkpoint, REQUEST)


def test_incomplete_projection_files(tmp_path, text_files):
    _, gemma, _ = text_files
    cfg = fx.conditioner_config("2.3")
    only_projection = fx.write_text_side(tmp_path / "proj.safetensors", cfg, parts=("projection",))
    with pytest.raises(CheckpointError, match="holds the LTX-2 text projection but not the embeddings connectors "
                                              "\\(video_embeddings_connector, audio_embeddings_connector\\)"):
        load_ltx2_text_encoder(gemma, only_projection, REQUEST)
    only_connectors = fx.write_text_side(tmp_path / "conn.safetensors", cfg, parts=("connectors",))
    with pytest.raises(CheckpointError, match="holds the embeddings connectors but not the LTX-2 text projection"):
        load_ltx2_text_encoder(gemma, only_connectors, REQUEST)
    # the two halves together are a complete text side
    encoder = load_ltx2_text_encoder(gemma, [only_projection, only_connectors], REQUEST, max_length=8)
    assert encoder.encode(["a cat"]).video.shape == (1, 8, 24)


def test_mismatched_sizes_and_settings(tmp_path, text_files):
    root, gemma, _ = text_files
    deeper = fx.write_ltx2_checkpoint(tmp_path / "deep.safetensors", fx.conditioner_config("19b", layers=9))
    with pytest.raises(CheckpointError, match="has 6 layers but the LTX-2 text projection takes 9 hidden states"):
        load_ltx2_text_encoder(gemma, deeper, REQUEST)
    wide = fx.write_ltx2_checkpoint(tmp_path / "wide.safetensors", fx.conditioner_config("19b", hidden=20))
    with pytest.raises(WrongComponentError, match="takes 140 features, not a multiple of this Gemma's width 32"):
        load_ltx2_text_encoder(gemma, wide, REQUEST)
    checkpoint = fx.write_ltx2_checkpoint(tmp_path / "ok.safetensors", fx.conditioner_config("19b"))
    with pytest.raises(ConfigurationError, match="max_length 10 must be a multiple of the connectors' 4 registers"):
        load_ltx2_text_encoder(gemma, checkpoint, REQUEST, max_length=10)
    bare = fx.write_gemma3(tmp_path / "models" / "text_encoders" / "gemma.safetensors", "comfy")
    with pytest.raises(CheckpointError, match="No Gemma tokenizer found for gemma.safetensors"):
        load_ltx2_text_encoder(bare, checkpoint, REQUEST)
    encoder = load_ltx2_text_encoder(bare, checkpoint, REQUEST, tokenizer=root / "tokenizer", max_length=8)
    assert isinstance(encoder, LTX2TextEncoder) and encoder.encode(["x"]).audio.shape == (1, 8, 32)


def test_gemma_bench_tiny(monkeypatch):
    """bench/ltx2_gemma.py runs end to end on toy sizes (no timing asserts)."""
    bench = Path(__file__).resolve().parent.parent / "bench"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("bench_ltx2_gemma", bench / "ltx2_gemma.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--tiny", "--tokens", "16", "--repeats", "1"])["rows"]
    bf16_bytes, fp8_bytes = rows["weight bytes (GB)"]
    assert fp8_bytes < 0.75 * bf16_bytes
    assert all(0 < e < 0.1 for e in rows["max rel. error vs fp32"] + rows["same, fp32 activations (storage only)"])


def test_real_sizes_are_read_from_shapes():
    """Gemma 3 12B and the 19B / 2.3 text sides at their published shapes (on meta): configs from shapes alone."""
    from videosdgx.ltx2.connectors import ConnectorConfig
    from videosdgx.ltx2.text_conditioner import LTX2TextConditioner, TextConditionerConfig, conditioner_config
    from videosdgx.text.gemma3_files import config_from_shapes

    with torch.device("meta"):
        gemma = Gemma3TextModel(Gemma3Config())
        shapes = {k: tuple(v.shape) for k, v in gemma.state_dict().items()}
        assert config_from_shapes(shapes) == Gemma3Config()
        assert abs(sum(v.numel() for v in gemma.state_dict().values()) - 11.77e9) < 0.01e9
        ltx19 = TextConditionerConfig(3840, 49, False, *[ConnectorConfig(30, 128, 2, ff_dim=15360)] * 2)
        ltx23 = TextConditionerConfig(3840, 49, True, ConnectorConfig(32, 128, 8, ff_dim=16384, gated=True),
                                      ConnectorConfig(32, 64, 8, ff_dim=8192, gated=True))
        for cfg in (ltx19, ltx23):
            shapes = {k: tuple(v.shape) for k, v in LTX2TextConditioner(cfg).state_dict().items()}
            assert conditioner_config(shapes, {}, 3840, "file") == cfg
    assert shapes["text_embedding_projection.video_aggregate_embed.weight"] == (4096, 188160)


def test_foreign_config_json_is_ignored(tmp_path):
    """A text_encoders folder may hold another model's config.json: only a Gemma 3 one sets the attention."""
    path = fx.write_gemma3(tmp_path / "gemma_3_12B_it.safetensors", "comfy")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral", "sliding_window": 4}))
    assert load_gemma3(path, REQUEST).module.cfg.sliding_window == DEFAULTS.sliding_window
