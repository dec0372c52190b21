"""T5 / UMT5 encoder, tokenizers, Wan prompt helpers and the CLIP vision tower against transformers (fp32, CPU)."""

import hashlib
import io
import logging

import pytest
import sentencepiece
import torch
import transformers

from videosdgx.runtime.errors import CheckpointError, WrongComponentError
from videosdgx.text.t5 import T5Config, T5Encoder, config_from_shapes, relative_position_bucket
from videosdgx.text.t5_keys import detect_t5_layout, hf_to_wan_key, t5_key_map, wan_to_hf_key
from videosdgx.text.tokenizer import load_tokenizer
from videosdgx.wan.clip_vision import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ClipVisionConfig,
    ClipVisionEncoder,
    convert_clip_vision_state_dict,
    detect_clip_vision_layout,
)
from videosdgx.wan.text_prompt import (
    WAN_FLF2V_NEGATIVE_PROMPT,
    WAN_I2V_NEGATIVE_PROMPT,
    WAN_NEGATIVE_PROMPT,
    clean_prompt,
    encode_prompts,
)

TINY = dict(vocab=128, d_model=32, d_kv=8, heads=4, d_ff=64, layers=3)
SEQ = 150  # longer than max_distance 128, so the clamped log buckets are exercised


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Make every parameter (norm scales included) distinct so a wrong mapping cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))


def _hf_t5(per_layer: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(vocab_size=128, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=3,
                  relative_attention_num_buckets=32, relative_attention_max_distance=128,
                  feed_forward_proj="gated-gelu", dropout_rate=0.0)
    if per_layer:
        model = transformers.UMT5EncoderModel(transformers.UMT5Config(**common))
    else:
        model = transformers.T5EncoderModel(transformers.T5Config(**common))
    _perturb(model, seed=1)
    return model.eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 128, (3, SEQ), generator=generator)
    mask = torch.zeros(3, SEQ, dtype=torch.long)
    for row, length in enumerate((SEQ, 37, 1)):
        mask[row, :length] = 1
        ids[row, length:] = 0
    return ids, mask


def _ours_from(state_dict: dict[str, torch.Tensor], cfg: T5Config) -> T5Encoder:
    model = T5Encoder(cfg)
    mapping = t5_key_map(state_dict)
    model.load_state_dict({mapping[k]: v for k, v in state_dict.items() if k in mapping}, strict=True)
    return model.eval()


def _assert_close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert ours.shape == reference.shape
    error = (ours - reference).abs().max().item()
    assert error <= 1e-5 * reference.abs().max().item(), error


@pytest.mark.parametrize("per_layer", [True, False], ids=["umt5", "t5_v1_1"])
def test_t5_encoder_matches_transformers(per_layer):
    reference = _hf_t5(per_layer)
    state_dict = reference.state_dict()
    cfg = config_from_shapes({k: v.shape for k, v in state_dict.items()})
    assert cfg == T5Config(**TINY, per_layer_position_bias=per_layer)
    ours = _ours_from(state_dict, cfg)
    ids, mask = _batch()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask)
    _assert_close(got, expected)
    for row, length in enumerate(mask.sum(1).tolist()):
        with torch.no_grad():
            alone = ours(ids[row : row + 1, :length], mask[row : row + 1, :length])
        _assert_close(alone[0], got[row, :length])


def test_position_buckets_match_transformers():
    attention = _hf_t5(per_layer=True).encoder.block[0].layer[0].SelfAttention
    offsets = torch.arange(-400, 401)
    expected = attention._relative_position_bucket(offsets)
    assert torch.equal(relative_position_bucket(offsets, 32, 128), expected)
    assert relative_position_bucket(torch.tensor([-3, 0, 5, 200, -200]), 32, 128).tolist() == [3, 0, 21, 31, 15]


def test_wan_t5_layout_round_trip():
    reference = _hf_t5(per_layer=True)
    hf = {k: v for k, v in reference.state_dict().items() if k != "encoder.embed_tokens.weight"}
    wan = {hf_to_wan_key(k): v for k, v in hf.items()}
    per_block = ["norm1.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight",
                 "pos_embedding.embedding.weight", "norm2.weight", "ffn.gate.0.weight", "ffn.fc1.weight",
                 "ffn.fc2.weight"]
    expected_keys = {"token_embedding.weight", "norm.weight"} | {f"blocks.{i}.{n}" for i in range(3) for n in per_block}
    assert set(wan) == expected_keys
    assert torch.equal(wan["blocks.2.ffn.gate.0.weight"], hf["encoder.block.2.layer.1.DenseReluDense.wi_0.weight"])
    assert torch.equal(wan["blocks.1.ffn.fc1.weight"], hf["encoder.block.1.layer.1.DenseReluDense.wi_1.weight"])
    assert detect_t5_layout(wan) == "wan" and detect_t5_layout(hf) == "hf"
    assert {wan_to_hf_key(k) for k in wan} == set(hf)
    ours = _ours_from(wan, T5Config(**TINY))
    ids, mask = _batch()
    with torch.no_grad():
        _assert_close(ours(ids, mask), reference(input_ids=ids, attention_mask=mask).last_hidden_state)


def test_t5_key_map_comfyui_extras():
    keys = ["shared.weight", "encoder.embed_tokens.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
            "encoder.block.0.layer.0.SelfAttention.q.scale_weight", "spiece_model", "scaled_fp8"]
    assert t5_key_map(keys) == {
        "shared.weight": "shared.weight",
        "encoder.block.0.layer.0.SelfAttention.q.weight": "encoder.block.0.layer.0.SelfAttention.q.weight",
        "encoder.block.0.layer.0.SelfAttention.q.scale_weight": "encoder.block.0.layer.0.SelfAttention.q.scale_weight",
    }
    assert t5_key_map(keys[1:3])["encoder.embed_tokens.weight"] == "shared.weight"
    assert wan_to_hf_key("blocks.4.attn.o.scale_weight") == "encoder.block.4.layer.0.SelfAttention.o.scale_weight"
    with pytest.raises(WrongComponentError, match="not a T5/UMT5 text encoder"):
        detect_t5_layout(["vision_model.embeddings.patch_embedding.weight", "blocks.0.self_attn.q.weight"])
    with pytest.raises(WrongComponentError, match="blocks.0.attn.zz.weight"):
        wan_to_hf_key("blocks.0.attn.zz.weight")


@pytest.mark.parametrize(
    "preset, params, shared_only_in_block_0",
    [(T5Config.umt5_xxl(), 5_680_910_336, False), (T5Config.t5_v1_1_xxl(), 4_762_310_656, True)],
    ids=["umt5_xxl", "t5_v1_1_xxl"],
)
def test_presets_on_meta(preset, params, shared_only_in_block_0):
    with torch.device("meta"):
        model = T5Encoder(preset)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert config_from_shapes(shapes) == preset
    assert sum(p.numel() for p in model.parameters()) == params
    assert list(model.buffers()) == []
    assert shapes["encoder.block.23.layer.1.DenseReluDense.wi_1.weight"] == (10240, 4096)
    bias_key = "encoder.block.23.layer.0.SelfAttention.relative_attention_bias.weight"
    assert (bias_key not in shapes) == shared_only_in_block_0
    assert shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] == (32, 64)


def test_config_from_shapes_names_missing_tensor():
    with pytest.raises(CheckpointError, match="relative_attention_bias"):
        config_from_shapes({"shared.weight": (128, 32), "encoder.block.0.layer.0.SelfAttention.q.weight": (32, 32)})


def test_float16_overflow_is_clamped():
    torch.manual_seed(0)
    model = T5Encoder(T5Config(**TINY))
    ffn = model.encoder.block[0].layer[1].DenseReluDense
    with torch.no_grad():
        model.shared.weight.fill_(1.0)
        ffn.wi_0.weight.fill_(1.0)
        ffn.wi_1.weight.fill_(1.0)
        ffn.wo.weight.fill_(100.0)  # 64 * gelu(32) * 32 * 100 = 6.6e6 > float16 max
    ids, mask = _batch()
    model.half()
    with torch.no_grad():
        assert torch.isinf(ffn(model.shared(ids[:1, :16]))).all()
        out = model(ids[:1, :16], mask[:1, :16])
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


# ----------------------------------------------------------------------------------------------------------------
# Tokenizers

CORPUS = [
    "A cat sits on a red boat in the summer sea.", "Dogs run across the green field at sunset.",
    "一只白色的猫坐在冲浪板上。", "Le chat noir dort sur le canapé.", "Die Katze schläft im Garten.",
    "Camera pans slowly over a quiet harbour full of yachts.",
]
PROMPTS = ["A cat on a boat.", "一只猫坐在板上", "Die  Katze   schläft ", "xyz QQQ ñ", ""]


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    """A tiny unigram SentencePiece model (T5 ids: pad 0, eos 1, unk 2, no BOS) and its HF tokenizer.json twin."""
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=proto, vocab_size=60, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        normalization_rule_name="identity", minloglevel=2,
    )
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    hf_tokenizer = transformers.T5Tokenizer(vocab=vocab, extra_ids=0)
    root = tmp_path_factory.mktemp("tokenizer")
    (root / "spm").mkdir()
    (root / "spm" / "spiece.model").write_bytes(proto.getvalue())
    hf_tokenizer.save_pretrained(root / "hf")
    return root, proto.getvalue(), hf_tokenizer


def test_tokenizer_loaders_agree_with_transformers(tokenizer_files):
    root, proto, hf_tokenizer = tokenizer_files
    expected = hf_tokenizer(PROMPTS, padding="max_length", max_length=24, truncation=True, return_tensors="pt")
    sources = [root / "hf" / "tokenizer.json", root / "hf", root / "spm" / "spiece.model", root / "spm", proto,
               torch.frombuffer(bytearray(proto), dtype=torch.uint8)]
    for source in sources:
        ids, mask = load_tokenizer(source).encode(PROMPTS, max_length=24)
        assert torch.equal(ids, expected["input_ids"]), source
        assert torch.equal(mask, expected["attention_mask"]), source
    lengths = mask.sum(1).tolist()
    assert lengths[-1] == 1 and ids[-1, 0] == 1  # the empty prompt is just </s>
    for row, length in enumerate(lengths):
        assert ids[row, length - 1] == 1 and (ids[row, length:] == 0).all()
        assert (ids[row, : length - 1] >= 2).all()  # no BOS, no pad or </s> inside the text


def test_tokenizer_truncation_warns(tokenizer_files, caplog):
    root, _, hf_tokenizer = tokenizer_files
    prompt = "Camera pans slowly over a quiet harbour full of yachts."
    full_length = len(hf_tokenizer(prompt).input_ids)
    assert full_length > 8
    with caplog.at_level(logging.WARNING, logger="videosdgx.text.tokenizer"):
        ids, mask = load_tokenizer(root / "spm").encode([prompt, "A cat"], max_length=8)
    assert f"Prompt 0 is {full_length} tokens long, over the limit of 8" in caplog.text
    assert "Prompt 1" not in caplog.text
    expected = hf_tokenizer(prompt, padding="max_length", max_length=8, truncation=True).input_ids
    assert ids[0].tolist() == expected and ids[0, -1] == 1 and mask[0].all()


def test_tokenizer_bad_sources(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.model")
    with pytest.raises(CheckpointError, match="neither tokenizer.json nor spiece.model"):
        load_tokenizer(tmp_path)
    with pytest.raises(CheckpointError, match="not a valid SentencePiece model"):
        load_tokenizer(b"not a sentencepiece model")


# ----------------------------------------------------------------------------------------------------------------
# Wan prompt helpers


def test_wan_negative_prompts():
    digest = hashlib.sha256(WAN_NEGATIVE_PROMPT.encode()).hexdigest()
    assert digest == "ce96e0324e4b54ce4b6e867f669ca520952e1a34cc116543516b1897f0d3c47e"  # Wan2.1 @9737cba
    assert len(WAN_NEGATIVE_PROMPT) == 137 and WAN_NEGATIVE_PROMPT.startswith("色调艳丽，过曝")
    assert WAN_I2V_NEGATIVE_PROMPT == "镜头晃动，" + WAN_NEGATIVE_PROMPT
    assert WAN_FLF2V_NEGATIVE_PROMPT == "镜头切换，" + WAN_NEGATIVE_PROMPT


def test_clean_prompt():
    assert clean_prompt("  A &amp;lt;b&amp;gt; cat\t\n on\u3000a  boat &quot;x&quot; ") == 'A <b> cat on a boat "x"'
    assert clean_prompt("a\x1cb") == "a\x1cb"


def test_encode_prompts_trims_padding(tokenizer_files):
    root, _, _ = tokenizer_files
    tokenizer = load_tokenizer(root / "hf")
    torch.manual_seed(0)
    encoder = T5Encoder(T5Config(**TINY)).eval()
    prompts = ["A cat on a boat.", "Die &amp; Katze"]
    contexts = encode_prompts(encoder, tokenizer, prompts, max_length=32)
    for prompt, context in zip(prompts, contexts):
        ids, mask = tokenizer.encode(clean_prompt(prompt), max_length=32)
        length = int(mask.sum())
        assert context.shape == (length, 32)
        with torch.no_grad():
            _assert_close(context, encoder(ids[:, :length], mask[:, :length])[0])


# ----------------------------------------------------------------------------------------------------------------
# CLIP vision

CLIP_TINY = ClipVisionConfig(image_size=28, patch_size=14, dim=32, heads=2, layers=3, mlp_dim=64)


@pytest.fixture(scope="module")
def hf_clip():
    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                           num_attention_heads=2, image_size=28, patch_size=14, hidden_act="gelu",
                                           layer_norm_eps=1e-5, projection_dim=24)
    model = transformers.CLIPVisionModelWithProjection(config)
    _perturb(model, seed=3)
    return model.eval()


def _pixels() -> torch.Tensor:
    return torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(4))


def _clip_from(state_dict: dict[str, torch.Tensor]) -> ClipVisionEncoder:
    model = ClipVisionEncoder(CLIP_TINY)
    missing, unexpected = model.load_state_dict(convert_clip_vision_state_dict(state_dict), strict=False)
    assert missing == []
    assert sorted(unexpected) == sorted(
        ["vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias", "visual_projection.weight"]
        + [f"vision_model.encoder.layers.2.{n}" for n in (
            "layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight", "layer_norm2.bias", "mlp.fc1.weight",
            "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
            "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
            "self_attn.out_proj.weight", "self_attn.out_proj.bias")]
    )
    return model.eval()


def _wan_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan `models_clip_*.pth` names (spec wan.md §6), with a stand-in text tower."""
    out = {
        "visual.patch_embedding.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.cls_embedding": hf["vision_model.embeddings.class_embedding"].reshape(1, 1, -1),
        "visual.pos_embedding": hf["vision_model.embeddings.position_embedding.weight"][None],
        "visual.pre_norm.weight": hf["vision_model.pre_layrnorm.weight"],
        "visual.pre_norm.bias": hf["vision_model.pre_layrnorm.bias"],
        "visual.post_norm.weight": hf["vision_model.post_layernorm.weight"],
        "visual.post_norm.bias": hf["vision_model.post_layernorm.bias"],
        "visual.head": hf["visual_projection.weight"].t(),
        "textual.token_embedding.weight": torch.zeros(5, 4),
        "log_scale": torch.tensor(4.6),
    }
    for i in range(3):
        layer = f"vision_model.encoder.layers.{i}."
        for param in ("weight", "bias"):
            qkv = [hf[f"{layer}self_attn.{p}_proj.{param}"] for p in "qkv"]
            out[f"visual.transformer.{i}.attn.to_qkv.{param}"] = torch.cat(qkv)
            out[f"visual.transformer.{i}.attn.proj.{param}"] = hf[f"{layer}self_attn.out_proj.{param}"]
            out[f"visual.transformer.{i}.norm1.{param}"] = hf[f"{layer}layer_norm1.{param}"]
            out[f"visual.transformer.{i}.norm2.{param}"] = hf[f"{layer}layer_norm2.{param}"]
            out[f"visual.transformer.{i}.mlp.0.{param}"] = hf[f"{layer}mlp.fc1.{param}"]
            out[f"visual.transformer.{i}.mlp.2.{param}"] = hf[f"{layer}mlp.fc2.{param}"]
    return out


def _open_clip_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Standard open_clip `visual.*` names, as ComfyUI's CLIP-vision loader accepts them."""
    out = {
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": hf["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": hf["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": hf["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": hf["vision_model.post_layernorm.bias"],
        "visual.proj": hf["visual_projection.weight"].t(),
    }
    for i in range(3):
        layer, block = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        out[block + "attn.in_proj_weight"] = torch.cat([hf[f"{layer}self_attn.{p}_proj.weight"] for p in "qkv"])
        out[block + "attn.in_proj_bias"] = torch.cat([hf[f"{layer}self_attn.{p}_proj.bias"] for p in "qkv"])
        for param in ("weight", "bias"):
            out[f"{block}attn.out_proj.{param}"] = hf[f"{layer}self_attn.out_proj.{param}"]
            out[f"{block}ln_1.{param}"] = hf[f"{layer}layer_norm1.{param}"]
            out[f"{block}ln_2.{param}"] = hf[f"{layer}layer_norm2.{param}"]
            out[f"{block}mlp.c_fc.{param}"] = hf[f"{layer}mlp.fc1.{param}"]
            out[f"{block}mlp.c_proj.{param}"] = hf[f"{layer}mlp.fc2.{param}"]
    return out


@pytest.mark.parametrize("layout", ["hf", "wan", "open_clip"])
def test_clip_vision_matches_transformers_penultimate(hf_clip, layout):
    hf = dict(hf_clip.state_dict())
    state_dict = {"hf": hf, "wan": _wan_layout(hf), "open_clip": _open_clip_layout(hf)}[layout]
    assert detect_clip_vision_layout(state_dict) == layout
    converted = convert_clip_vision_state_dict(state_dict)
    assert set(converted) == set(hf) - {"vision_model.embeddings.position_ids"}
    for key, tensor in converted.items():
        assert torch.equal(tensor, hf[key]), key
    model = _clip_from(state_dict)
    pixels = _pixels()
    with torch.no_grad():
        expected = hf_clip(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        _assert_close(model(pixels), expected)


def test_clip_preprocess():
    model = ClipVisionEncoder(CLIP_TINY)
    images = torch.full((2, 3, 40, 50), 0.25)
    images[1] = -1.0
    pixels = model.preprocess(images)
    assert pixels.shape == (2, 3, 28, 28)
    mean, std = torch.tensor(OPENAI_CLIP_MEAN), torch.tensor(OPENAI_CLIP_STD)
    _assert_close(pixels[0, :, 5, 7], (0.625 - mean) / std)
    _assert_close(pixels[1, :, 20, 3], (0.0 - mean) / std)
    assert model.encode(images).shape == (2, 5, 32)


def test_clip_vit_h_on_meta_and_wrong_file():
    with torch.device("meta"):
        model = ClipVisionEncoder(ClipVisionConfig.vit_h_14())
    names = dict(model.named_parameters())
    assert names["vision_model.embeddings.position_embedding.weight"].shape == (257, 1280)
    assert names["vision_model.encoder.layers.30.mlp.fc1.weight"].shape == (5120, 1280)
    assert "vision_model.encoder.layers.31.mlp.fc1.weight" not in names
    # embeddings 752,640 + 1,280 + 328,960, pre norm 2,560, 31 blocks x 19,677,440; with the last block, post norm
    # and the 1280x1024 projection this is open_clip's 632.08 M-parameter ViT-H/14 tower (1.26 GB in fp16).
    assert sum(p.numel() for p in model.parameters()) == 611_086_080
    assert list(model.buffers()) == []
    assert model(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 257, 1280)
    with pytest.raises(WrongComponentError, match="not a CLIP vision model"):
        detect_clip_vision_layout(["shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight"])
    with pytest.raises(WrongComponentError, match="visual.transformer.0.attn.zz.weight"):
        convert_clip_vision_state_dict({"visual.transformer.0.attn.to_qkv.weight": torch.zeros(3, 1),
                                        "visual.transformer.0.attn.zz.weight": torch.zeros(1)})
