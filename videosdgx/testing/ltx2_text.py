"""Tiny LTX-2 text-side files in the published layouts: Gemma 3 (ComfyUI single file, Hugging Face shards;
fp32, bf16, fp8 scaled, fp4 mixed, plain fp8), a Gemma-style tokenizer (tokenizer.model + tokenizer.json), and
the text projection + embeddings connectors under the official single-file key names (19B and 2.3 flavours),
alone or inside a toy single-file checkpoint. Weights are random.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece
import tokenizers
import torch
from tokenizers import decoders, normalizers, processors

from videosdgx.ltx2.connectors import ConnectorConfig
from videosdgx.ltx2.text_conditioner import DIT_PREFIX, LTX2TextConditioner, TextConditionerConfig
from videosdgx.runtime.fp8 import quantize_fp8
from videosdgx.runtime.nvfp4 import quantize_nvfp4
from videosdgx.testing.files import random_like_state_dict, save_safetensors, save_sharded
from videosdgx.testing.layouts import ltx2_checkpoint
from videosdgx.text.gemma3 import Gemma3Config, Gemma3TextModel

TINY_GEMMA = Gemma3Config(vocab=400, hidden=32, intermediate=64, layers=6, heads=4, kv_heads=2, head_dim=16,
                          sliding_window=4, sliding_pattern=3, query_pre_attn_scalar=16.0)
GEMMA_PREFIX = {"comfy": "model.", "hf": "language_model.model.", "hf_new": "model.language_model."}
CORPUS = [
    "A cat sits on a red boat in the summer sea.", "Dogs run across the green field at sunset.",
    "一只白色的猫坐在冲浪板上。", "Camera pans slowly over a quiet harbour full of yachts.",
    "A woman speaks softly to the camera while rain falls behind her.",
]


def gemma3_state(cfg: Gemma3Config = TINY_GEMMA, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp32 weights under `Gemma3TextModel` (= Hugging Face `Gemma3TextModel`) names."""
    with torch.device("meta"):
        model = Gemma3TextModel(cfg)
    return random_like_state_dict(model, seed)


def hf_text_config(cfg: Gemma3Config) -> dict:
    """The text part of a Hugging Face Gemma 3 `config.json` for `cfg`."""
    return {
        "model_type": "gemma3_text", "vocab_size": cfg.vocab, "hidden_size": cfg.hidden,
        "intermediate_size": cfg.intermediate, "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
        "sliding_window": cfg.sliding_window, "query_pre_attn_scalar": int(cfg.query_pre_attn_scalar),
        "rms_norm_eps": cfg.eps, "rope_theta": cfg.rope_global_theta, "rope_local_base_freq": cfg.rope_local_theta,
        "rope_scaling": {"rope_type": "linear", "factor": cfg.rope_global_scale},
        "layer_types": ["full_attention" if cfg.is_global(i) else "sliding_attention" for i in range(cfg.layers)],
    }


def _comfy_quant(fmt: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)


def _quantize_linears(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """Linear weights to fp8 (ComfyUI mixed precision: `weight_scale` + `comfy_quant`; or a plain cast), or for
    `fp4_mixed` the feed-forward weights to NVFP4 (ComfyUI layout) and the attention ones to scaled fp8."""
    out = {}
    for key, value in state.items():
        stem = key.removesuffix("weight")
        if not key.endswith("_proj.weight"):
            out[key] = value.to(torch.bfloat16) if storage == "fp4_mixed" else value
        elif storage == "fp4_mixed" and ".mlp." in key:
            out[key], out[stem + "weight_scale"], out[stem + "weight_scale_2"] = quantize_nvfp4(value, "comfy")
            out[stem + "comfy_quant"] = _comfy_quant("nvfp4")
        elif storage == "int8":  # comfy-kitchen int8_tensorwise: per-tensor scale on attention, per-row on the MLP
            rows = value.abs().amax(dim=1, keepdim=True) if ".mlp." in key else value.abs().amax()
            scale = (rows.float() / 127).clamp(min=1e-12)
            out[key] = (value / scale).round().clamp(-128, 127).to(torch.int8)
            out[stem + "weight_scale"] = scale.squeeze(1) if scale.ndim else scale
            out[stem + "comfy_quant"] = _comfy_quant("int8_tensorwise")
        elif storage == "fp8_e4m3fn":
            out[key] = quantize_fp8(value, per_tensor_scale=False)[0]
        else:
            out[key], out[stem + "weight_scale"] = quantize_fp8(value)
            out[stem + "comfy_quant"] = _comfy_quant("float8_e4m3fn")
    return out


def store(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """`fp32`, `bf16`, `fp8_scaled` / `fp4_mixed` / `int8` (ComfyUI mixed precision) or `fp8_e4m3fn` (plain
    cast)."""
    if storage == "bf16":
        return {k: v.to(torch.bfloat16) for k, v in state.items()}
    if storage in ("fp8_scaled", "fp8_e4m3fn", "fp4_mixed", "int8"):
        return _quantize_linears(state, storage)
    return state


def write_gemma3(path: Path, layout: str = "comfy", storage: str = "fp32", cfg: Gemma3Config = TINY_GEMMA,
                 seed: int = 0, spiece: bytes | None = None, shards: int = 2) -> Path:
    """Gemma 3 in a published layout; returns the file (comfy) or the shard index (hf, hf_new: a folder `path`
    holding shards, `model.safetensors.index.json`, `config.json` and, like the google repo, vision tensors)."""
    state = store(gemma3_state(cfg, seed), storage)
    prefix = GEMMA_PREFIX[layout]
    tensors = {prefix + k: v for k, v in state.items()}
    if layout == "comfy":
        if spiece is not None:
            tensors["spiece_model"] = torch.frombuffer(bytearray(spiece), dtype=torch.uint8)
        return save_safetensors(path, tensors)
    vision = "vision_tower." if layout == "hf" else "model.vision_tower."
    tensors[vision + "vision_model.embeddings.patch_embedding.weight"] = torch.randn(8, 3, 2, 2)
    tensors[vision.replace("vision_tower", "multi_modal_projector") + "mm_input_projection_weight"] = torch.randn(8, 4)
    index = save_sharded(path, tensors, shards, stem="model")
    (path / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": hf_text_config(cfg)}))
    return index


def gemma_sentencepiece() -> bytes:
    """A tiny unigram SentencePiece model with Gemma's special ids: pad 0, eos 1, bos 2, unk 3, byte fallback."""
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=proto, vocab_size=TINY_GEMMA.vocab, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", byte_fallback=True, add_dummy_prefix=False,
        remove_extra_whitespaces=False, character_coverage=1.0, normalization_rule_name="identity", minloglevel=2,
    )
    return proto.getvalue()


def write_gemma_tokenizer(folder: Path) -> Path:
    """`tokenizer.model` and its `tokenizer.json` twin (Gemma's normalizer, `<bos>` template) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    proto = gemma_sentencepiece()
    (folder / "tokenizer.model").write_bytes(proto)
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    tokenizer = tokenizers.Tokenizer(tokenizers.models.Unigram(vocab, unk_id=3, byte_fallback=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def conditioner_config(flavour: str, hidden: int = TINY_GEMMA.hidden,
                       layers: int = TINY_GEMMA.layers + 1, registers: int = 4) -> TextConditionerConfig:
    """Tiny 19B-style (shared projection to `hidden`, ungated) or 2.3-style (per-modality, gated) connectors with
    distinct head counts and widths per modality."""
    if flavour == "19b":
        video = ConnectorConfig(heads=2, head_dim=hidden // 2, layers=2, registers=registers, ff_dim=4 * hidden)
        audio = ConnectorConfig(heads=4, head_dim=hidden // 4, layers=2, registers=registers, ff_dim=4 * hidden)
        return TextConditionerConfig(hidden, layers, False, video, audio)
    video = ConnectorConfig(heads=3, head_dim=8, layers=2, registers=registers, ff_dim=96, gated=True)
    audio = ConnectorConfig(heads=2, head_dim=6, layers=3, registers=registers, ff_dim=48, gated=True)
    return TextConditionerConfig(hidden, layers, True, video, audio)


def conditioner_metadata(cfg: TextConditionerConfig) -> dict[str, str]:
    """The embedded `config` of a single-file checkpoint, connector part."""
    transformer = {
        "connector_attention_head_dim": cfg.video.head_dim, "connector_num_attention_heads": cfg.video.heads,
        "audio_connector_attention_head_dim": cfg.audio.head_dim, "connector_num_layers": cfg.video.layers,
        "connector_num_learnable_registers": cfg.video.registers, "connector_positional_embedding_max_pos": [4096],
        "positional_embedding_theta": 10000.0, "rope_type": "split", "frequencies_precision": "float64",
        "connector_apply_gated_attention": cfg.video.gated,
    }
    return {"config": json.dumps({"transformer": transformer})}


def text_side_state(cfg: TextConditionerConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Projection + connectors under the official single-file names (connectors under `model.diffusion_model.`)."""
    with torch.device("meta"):
        model = LTX2TextConditioner(cfg)
    state = random_like_state_dict(model, seed)
    return {(k if k.startswith("text_embedding_projection.") else DIT_PREFIX + k): v for k, v in state.items()}


def write_text_side(path: Path, cfg: TextConditionerConfig, seed: int = 0, parts: tuple[str, ...] = ("projection",
                    "connectors"), with_dit_prefix: bool = True, storage: str = "fp32") -> Path:
    """A separate text-side file (like `ltx-2-19b-dev-fp4_projections_only.safetensors`) holding `parts`."""
    state = text_side_state(cfg, seed)
    keep = {"projection": "text_embedding_projection.", "connectors": DIT_PREFIX}
    state = {k: v for k, v in state.items() if k.startswith(tuple(keep[p] for p in parts))}
    if not with_dit_prefix:
        state = {k.removeprefix(DIT_PREFIX): v for k, v in state.items()}
    return save_safetensors(path, store(state, storage))


def write_ltx2_checkpoint(path: Path, cfg: TextConditionerConfig, seed: int = 0) -> Path:
    """A toy single-file LTX-2 checkpoint (DiT, VAEs, vocoder) carrying real-shaped text-side tensors and the
    embedded config."""
    toy = {k: v for k, v in ltx2_checkpoint(gated=cfg.per_modality).items()
           if not k.startswith("text_embedding_projection.") and "_embeddings_connector." not in k}
    return save_safetensors(path, {**toy, **text_side_state(cfg, seed)}, metadata=conditioner_metadata(cfg))
