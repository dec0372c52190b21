"""Key names of published T5 / UMT5 encoder files, mapped onto `T5Encoder`'s (Hugging Face / ComfyUI) names.

Two layouts exist:
* "hf": Hugging Face `T5EncoderModel` / `UMT5EncoderModel`, diffusers `text_encoder/`, ComfyUI `umt5_xxl_*`
  files. Used as is, except the `encoder.embed_tokens.weight` alias of `shared.weight`. ComfyUI files also hold
  `spiece_model` (the tokenizer as a uint8 tensor) and, when fp8-scaled, a `scaled_fp8` marker plus one
  `<linear>.scale_weight` per quantized Linear.
* "wan": the original Wan release `models_t5_umt5-xxl-enc-bf16.pth` (`token_embedding`, `blocks.{i}.attn.q`, ...).
"""

import re
from collections.abc import Iterable
from typing import Literal

from videosdgx.runtime.errors import WrongComponentError

T5Layout = Literal["hf", "wan"]

SPIECE_MODEL_KEY = "spiece_model"
SCALED_FP8_MARKER = "scaled_fp8"
_NON_WEIGHT_KEYS = {SPIECE_MODEL_KEY, SCALED_FP8_MARKER}
_EMBED_TOKENS_ALIAS = "encoder.embed_tokens.weight"

# (Wan pattern, HF pattern) with `{i}` the block index; both are followed by the tensor suffix (weight, scale_weight).
_WAN_TO_HF = [
    ("token_embedding", "shared"),
    ("norm", "encoder.final_layer_norm"),
    ("blocks.{i}.norm1", "encoder.block.{i}.layer.0.layer_norm"),
    ("blocks.{i}.attn.q", "encoder.block.{i}.layer.0.SelfAttention.q"),
    ("blocks.{i}.attn.k", "encoder.block.{i}.layer.0.SelfAttention.k"),
    ("blocks.{i}.attn.v", "encoder.block.{i}.layer.0.SelfAttention.v"),
    ("blocks.{i}.attn.o", "encoder.block.{i}.layer.0.SelfAttention.o"),
    ("blocks.{i}.pos_embedding.embedding", "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias"),
    ("blocks.{i}.norm2", "encoder.block.{i}.layer.1.layer_norm"),
    ("blocks.{i}.ffn.gate.0", "encoder.block.{i}.layer.1.DenseReluDense.wi_0"),
    ("blocks.{i}.ffn.fc1", "encoder.block.{i}.layer.1.DenseReluDense.wi_1"),
    ("blocks.{i}.ffn.fc2", "encoder.block.{i}.layer.1.DenseReluDense.wo"),
]


def _compile(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)") + r"\.(?P<suffix>[a-z_]+)$")


_RULES_FROM_WAN = [(_compile(wan), hf) for wan, hf in _WAN_TO_HF]
_RULES_FROM_HF = [(_compile(hf), wan) for wan, hf in _WAN_TO_HF]


def _rename(key: str, rules: list[tuple[re.Pattern, str]], layout: str) -> str:
    for pattern, target in rules:
        match = pattern.match(key)
        if match:
            return target.format(i=match.groupdict().get("i")) + "." + match["suffix"]
    raise WrongComponentError(f"Unexpected tensor '{key}' in a {layout}-layout T5 text encoder file.")


def wan_to_hf_key(key: str) -> str:
    """`blocks.3.attn.q.weight` -> `encoder.block.3.layer.0.SelfAttention.q.weight`."""
    return _rename(key, _RULES_FROM_WAN, "Wan")


def hf_to_wan_key(key: str) -> str:
    """`encoder.block.3.layer.0.SelfAttention.q.weight` -> `blocks.3.attn.q.weight`."""
    return _rename(key, _RULES_FROM_HF, "Hugging Face")


def detect_t5_layout(keys: Iterable[str]) -> T5Layout:
    """Tell a Hugging Face / ComfyUI T5 file from a Wan `.pth` one, or refuse a file that is neither."""
    keys = set(keys)
    if "token_embedding.weight" in keys and "blocks.0.attn.q.weight" in keys:
        return "wan"
    if {"shared.weight", _EMBED_TOKENS_ALIAS} & keys and "encoder.block.0.layer.0.SelfAttention.q.weight" in keys:
        return "hf"
    raise WrongComponentError(
        "This file is not a T5/UMT5 text encoder (no `shared.weight` + `encoder.block.0...` nor Wan "
        "`token_embedding.weight` + `blocks.0...` tensors). Pick the text encoder file, e.g. "
        "umt5_xxl_fp16.safetensors for Wan, in the text encoder loader."
    )


def t5_key_map(keys: Iterable[str]) -> dict[str, str]:
    """Map every weight key of a T5 file to its `T5Encoder` name (`*.scale_weight` keys map alongside their
    weights); `spiece_model`, the `scaled_fp8` marker and a duplicate `embed_tokens` alias are left out."""
    keys = list(keys)
    layout = detect_t5_layout(keys)
    has_shared = "shared.weight" in keys
    mapping = {}
    for key in keys:
        if key in _NON_WEIGHT_KEYS or (key == _EMBED_TOKENS_ALIAS and has_shared):
            continue
        if layout == "wan":
            mapping[key] = wan_to_hf_key(key)
        else:
            mapping[key] = "shared.weight" if key == _EMBED_TOKENS_ALIAS else key
    return mapping
