"""LTX-2 text side: Gemma 3 vs transformers, tokenizer vs transformers, projection + connectors vs diffusers
(19B and 2.3 flavours), every published file layout through the real loaders, and bad inputs (CPU, fp32)."""

from __future__ import annotations

from dataclasses import replace

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
PROMPTS = ["A cat sits on a red boat.", "  一只猫坐在板上  ", "Camera pans slowly over a quiet harbour full of yachts "
           "while a woman speaks softly to the camera and rain falls behind her."]


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


@pytest.mark.parametrize("storage", ["fp8_scaled", "fp8_e4m3fn", "bf16"])
def test_gemma3_quantized_and_bf16_files(tmp_path, storage):
    """fp8 Linear weights stay fp8 (runtime QuantizedLinear) and give the states of their dequantised weights."""
    path = fx.write_gemma3(tmp_path / f"gemma_3_12B_it_{storage}.safetensors", "comfy", storage)
    model = load_gemma3(path, REQUEST).module
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert len(quantized) == (7 * fx.TINY_GEMMA.layers if storage != "bf16" else 0)
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
