"""LTX-2.5 text encoder: Gemma 4 vs transformers `Gemma4UnifiedTextModel`, the with-projections file, identification."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers.models.gemma4_unified.configuration_gemma4_unified import Gemma4UnifiedTextConfig
from transformers.models.gemma4_unified.modeling_gemma4_unified import Gemma4UnifiedTextModel

from videosdgx.ltx2.text_conditioner import LTX2TextConditioner
from videosdgx.ltx2.text_encoder25 import load_gemma4, load_ltx25_text_encoder
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import WrongComponentError
from videosdgx.runtime.identify import identify
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing import ltx2_text as fx2
from videosdgx.testing import ltx25 as fx
from videosdgx.text.gemma4 import Gemma4Config

REQUEST = LoadRequest()
PROMPTS = ["A cat sits on a red boat.", "Camera pans slowly over a quiet harbour while rain falls behind a woman."]


def hf_gemma4(cfg: Gemma4Config, state: dict[str, torch.Tensor]) -> Gemma4UnifiedTextModel:
    kwargs = fx.hf_gemma4_text_config(cfg)
    kwargs.pop("model_type")
    config = Gemma4UnifiedTextConfig(**kwargs, max_position_embeddings=64, pad_token_id=0)
    config._attn_implementation = "eager"
    model = Gemma4UnifiedTextModel(config).eval()
    model.load_state_dict(state)
    return model


def left_padded(vocab: int, length: int = 12, valid: tuple[int, ...] = (12, 5)) -> tuple[torch.Tensor, ...]:
    ids = torch.randint(4, vocab, (len(valid), length), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(len(valid), length, dtype=torch.long)
    for row, n in enumerate(valid):
        mask[row, length - n:] = 1
        ids[row, : length - n] = 0
    return ids, mask


def max_relative_error(ours: list[torch.Tensor], ref: tuple[torch.Tensor, ...], mask: torch.Tensor) -> float:
    assert len(ours) == len(ref)
    valid = mask.bool()
    return max(((o[valid] - r[valid]).abs().max() / r[valid].abs().max()).item() for o, r in zip(ours, ref))


@pytest.mark.parametrize("layout", ["hf", "comfy"])
def test_gemma4_matches_transformers(tmp_path, layout):
    """Through the real loader. HF: config.json beside it (window 4 < 12 tokens); ComfyUI-flat: no config.json, so
    transformers' defaults (window 1024). Global layers (own head size, one KV head, values = keys) come from the
    shapes in both."""
    path = fx.write_ltx25_text_encoder(tmp_path / "te.safetensors", layout, config_json=layout == "hf")
    model = load_gemma4(path, REQUEST).module
    expected = fx.TINY_GEMMA4 if layout == "hf" else replace(fx.TINY_GEMMA4, sliding_window=1024)
    assert model.cfg == expected
    ids, mask = left_padded(expected.vocab)
    with torch.no_grad():
        ref = hf_gemma4(expected, fx.gemma4_state()).forward(input_ids=ids, attention_mask=mask,
                                                             output_hidden_states=True).hidden_states
        error = max_relative_error(model(ids, mask), ref, mask)
    assert error < 1e-5, error
    if layout == "hf":  # the window matters: the same weights with a wide window differ
        wide = hf_gemma4(replace(expected, sliding_window=64), fx.gemma4_state())
        with torch.no_grad():
            ref_wide = wide(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        assert max_relative_error(model(ids, mask), ref_wide, mask) > 1e-3


def test_ltx25_text_encoder_end_to_end(tmp_path):
    """Tokenizer -> Gemma 4 -> projections -> connectors from the one file equals transformers' Gemma 4 followed by
    the LTX-2.3 text side (itself checked against diffusers in test_ltx2_text.py) with the file's weights."""
    path = fx.write_ltx25_text_encoder(tmp_path / "te.safetensors", "hf", config_json=True)
    fx2.write_gemma_tokenizer(tmp_path / "tokenizer")
    encoder = load_ltx25_text_encoder(path, REQUEST, max_length=16)
    video, audio, mask = encoder.encode(PROMPTS)
    ids, attention = encoder.tokenizer.encode(PROMPTS, 16)
    conditioner = LTX2TextConditioner(fx.ltx25_conditioner_config())
    state = {k.removeprefix("model.diffusion_model."): v for k, v in fx2.text_side_state(conditioner.cfg, 1).items()}
    conditioner.load_state_dict(state)
    with torch.no_grad():
        states = hf_gemma4(fx.TINY_GEMMA4, fx.gemma4_state())(
            input_ids=ids, attention_mask=attention, output_hidden_states=True).hidden_states
        ref_video, ref_audio, _ = conditioner(list(states), attention)
    assert video.shape == (2, 16, 24) and audio.shape == (2, 16, 12) and bool(mask.all())
    for got, ref in ((video, ref_video), (audio, ref_audio)):
        assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-5
    encoder.release()
    assert torch.equal(encoder.encode(PROMPTS).video, video)  # reloaded from the file


def test_identification_and_refusals(tmp_path):
    combined = fx.write_ltx25_text_encoder(tmp_path / "te.safetensors", "comfy", storage=torch.bfloat16)
    with open_checkpoint(combined) as checkpoint:
        identity = identify(checkpoint)
    assert (identity.family, identity.component) == ("ltx2", "text encoder")
    assert "Gemma 4 (6 layers)" in identity.variant and identity.dtype == "bfloat16"

    bare = fx.write_ltx25_text_encoder(tmp_path / "gemma4.safetensors", "hf", text_side=False)
    with pytest.raises(WrongComponentError, match="gemma4-12b-with-proj-ltx-2.5"):
        load_ltx25_text_encoder(bare, REQUEST, tokenizer=fx2.write_gemma_tokenizer(tmp_path / "tok"))

    gemma3 = fx2.write_gemma3(tmp_path / "gemma3.safetensors", "comfy")
    with pytest.raises(WrongComponentError, match="Gemma 3.*LTX-2.5 text encoder loader"):
        load_ltx25_text_encoder(gemma3, REQUEST, tokenizer=tmp_path / "tok")


layer_dtype = {"fp8_scaled": torch.float8_e4m3fn, "int8": torch.int8}


@pytest.mark.parametrize("quantized", ["fp8_scaled", "int8"])
def test_quantized_gemma4_stays_quantized_and_matches_its_dequantized_weights(tmp_path, quantized):
    from videosdgx.runtime.quantized_linear import QuantizedLinear
    from videosdgx.text.gemma4 import Gemma4TextModel

    path = fx.write_ltx25_text_encoder(tmp_path / "te.safetensors", "comfy", quantized=quantized)
    with open_checkpoint(path) as checkpoint:
        assert identify(checkpoint).quantization == {"fp8_scaled": "fp8 (per-tensor weight_scale)",
                                                     "int8": "int8 (weight_scale)"}[quantized]
    model = load_gemma4(path, REQUEST).module
    for layer in (model.layers[0].self_attn.q_proj, model.layers[0].mlp.down_proj):
        assert isinstance(layer, QuantizedLinear) and layer.weight.dtype == layer_dtype[quantized]
    with open_checkpoint(path) as checkpoint:
        state = {}
        for key in checkpoint.keys():
            name = key.removeprefix("model.")
            if name.startswith(("embed_tokens.", "layers.", "norm.")) and not name.endswith(("_scale", "comfy_quant")):
                value = checkpoint.get(key).float()
                scale = key.removesuffix("weight") + "weight_scale"
                if scale in checkpoint:
                    factor = checkpoint.get(scale).float()
                    value = value * (factor.reshape(-1, 1) if factor.numel() > 1 else factor)
                state[name] = value
    reference = Gemma4TextModel(replace(fx.TINY_GEMMA4, sliding_window=1024))
    reference.load_state_dict(state)
    ids, mask = left_padded(fx.TINY_GEMMA4.vocab)
    with torch.no_grad():
        error = max_relative_error(model(ids, mask), tuple(reference(ids, mask)), mask)
    assert error < 1e-5, error
