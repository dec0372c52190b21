"""Loading Gemma 3 text models from their published layouts, and their configuration.

Layouts (the prefix in front of `embed_tokens`, `layers.N.*`, `norm`):
* `model.` — Comfy-Org `gemma_3_12B_it*.safetensors` (bf16, fp8 scaled, fp4 mixed), GitMylo's
  `gemma_3_12B_it_fp8_e4m3fn.safetensors`, Hugging Face `Gemma3ForCausalLM`;
* `language_model.model.` — google/gemma-3-12b-it shards (`Gemma3ForConditionalGeneration`, older transformers);
* `model.language_model.` — the same saved by transformers >= 4.5x.
Vision tower, projector, `lm_head` and the embedded `spiece_model` are not part of the text model. fp8 / NVFP4
Linear weights stay quantised (runtime.quantized_linear); other tensors are cast to the requested dtype.

Shapes give every size. The attention settings (sliding window, global-layer pattern, RoPE bases and scaling,
query scale) come from a Hugging Face `config.json` next to the weights when there is one, else from Gemma 3 12B's.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields, replace

import torch

from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.errors import CheckpointError, WrongComponentError
from videosdgx.runtime.identify import expect, identify
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file
from videosdgx.text.gemma3 import Gemma3Config, Gemma3TextModel

log = logging.getLogger(__name__)

LOADER = "the LTX-2 text encoder loader"
PREFIXES = ("model.language_model.", "language_model.model.", "model.")
SPIECE_MODEL_KEY = "spiece_model"


def gemma3_prefix(keys, source: str = "This file") -> str:
    """The prefix of the text model's tensors, or WrongComponentError for a file with no Gemma 3 text model."""
    keys = set(keys)
    for prefix in PREFIXES:
        if {prefix + "embed_tokens.weight", prefix + "layers.0.self_attn.q_norm.weight"} <= keys:
            return prefix
    if any(prefix + "layers.0.pre_feedforward_layernorm.weight" in keys for prefix in PREFIXES):
        raise WrongComponentError(
            f"{source} is a Gemma 2 text model (no query/key norms), not Gemma 3. LTX-2 needs Gemma 3 12B, e.g. "
            "Comfy-Org's gemma_3_12B_it_fp8_scaled.safetensors or the google/gemma-3-12b-it shards."
        )
    raise WrongComponentError(
        f"{source} holds no Gemma 3 text model (no `model.embed_tokens.weight` + `model.layers.0.self_attn.q_norm` "
        "tensors, with or without a `language_model.` part). LTX-2 needs Gemma 3 12B, e.g. Comfy-Org's "
        "gemma_3_12B_it_fp8_scaled.safetensors or the google/gemma-3-12b-it shards."
    )


def gemma3_key_map(keys, source: str = "This file") -> dict[str, str]:
    """File key -> `Gemma3TextModel` name, for every tensor of the text model (scales included)."""
    prefix = gemma3_prefix(keys, source)
    text_parts = ("embed_tokens.", "layers.", "norm.")
    return {key: key[len(prefix):] for key in keys
            if key.startswith(prefix) and key[len(prefix):].startswith(text_parts)}


def layer_count(names) -> int:
    return 1 + max(int(name.split(".")[1]) for name in names if name.startswith("layers."))


def config_from_shapes(shapes: dict[str, tuple[int, ...]], settings: dict | None = None) -> Gemma3Config:
    """Sizes from the tensor shapes (in `Gemma3TextModel` names); attention settings from `settings`
    (a Hugging Face text config dict) or Gemma 3 12B's defaults."""
    try:
        vocab, hidden = shapes["embed_tokens.weight"]
        head_dim = shapes["layers.0.self_attn.q_norm.weight"][0]
        q_out = shapes["layers.0.self_attn.q_proj.weight"][0]
        kv_out = shapes["layers.0.self_attn.k_proj.weight"][0]
        intermediate = shapes["layers.0.mlp.gate_proj.weight"][0]
    except KeyError as missing:
        raise CheckpointError(
            f"This Gemma 3 file has no tensor {missing}: it is not a complete Gemma 3 text model. Download it again."
        ) from None
    cfg = Gemma3Config(vocab=vocab, hidden=hidden, intermediate=intermediate, layers=layer_count(shapes),
                       heads=q_out // head_dim,
                       kv_heads=kv_out // head_dim, head_dim=head_dim)
    return replace(cfg, **hf_attention_settings(settings)) if settings else cfg


def hf_attention_settings(config: dict) -> dict:
    """Gemma3Config fields from a Hugging Face (text) config dict, old and new transformers spellings."""
    config = config.get("text_config", config)
    out = {}
    if "sliding_window" in config:
        out["sliding_window"] = int(config["sliding_window"])
    if "layer_types" in config:
        out["sliding_pattern"] = config["layer_types"].index("full_attention") + 1
    elif "sliding_window_pattern" in config:
        out["sliding_pattern"] = int(config["sliding_window_pattern"])
    if "query_pre_attn_scalar" in config:
        out["query_pre_attn_scalar"] = float(config["query_pre_attn_scalar"])
    if "rms_norm_eps" in config:
        out["eps"] = float(config["rms_norm_eps"])
    rope = config.get("rope_parameters") or {}
    global_rope = rope.get("full_attention", config.get("rope_scaling") or {})
    if "rope_theta" in config or "rope_theta" in global_rope:
        out["rope_global_theta"] = float(global_rope.get("rope_theta", config.get("rope_theta")))
    local = rope.get("sliding_attention", {}).get("rope_theta", config.get("rope_local_base_freq"))
    if local is not None:
        out["rope_local_theta"] = float(local)
    if global_rope or "rope_scaling" in config:
        linear = global_rope.get("rope_type", global_rope.get("type")) == "linear"
        out["rope_global_scale"] = float(global_rope.get("factor", 1.0)) if linear else 1.0
    known = {f.name for f in fields(Gemma3Config)}
    return {k: v for k, v in out.items() if k in known}


def _config_json(checkpoint: Checkpoint) -> dict | None:
    """The Hugging Face Gemma 3 config.json beside the weights; another model's config.json there is ignored."""
    candidate = checkpoint.files[0].parent / "config.json"
    if not candidate.is_file():
        return None
    try:
        config = json.loads(candidate.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{candidate} is not valid JSON ({exc}). Download it again or delete it.") from None
    model_type = config.get("text_config", config).get("model_type", config.get("model_type"))
    if model_type not in ("gemma3", "gemma3_text"):
        log.info("Ignoring %s: it describes a %s model, not Gemma 3", candidate, model_type)
        return None
    return config


@dataclass(frozen=True)
class Gemma3Header:
    """What a Gemma 3 file's header tells before any weight is read."""

    hidden: int
    layers: int
    spiece_model: torch.Tensor | None  # the embedded SentencePiece tokenizer, if any


def read_gemma3_header(path: str | os.PathLike | list) -> Gemma3Header:
    with open_checkpoint(path) as checkpoint:
        expect(identify(checkpoint), "text", "text encoder", checkpoint.name, LOADER)
        names = gemma3_key_map(checkpoint.keys(), checkpoint.name)
        shapes = {name: checkpoint.info(key).shape for key, name in names.items()}
        spiece = checkpoint.get(SPIECE_MODEL_KEY).clone() if SPIECE_MODEL_KEY in checkpoint else None
        return Gemma3Header(shapes["embed_tokens.weight"][1], layer_count(shapes), spiece)


def load_gemma3(path: str | os.PathLike | list, request: LoadRequest) -> LoadedModel:
    """A Gemma 3 text model from any layout above."""

    def build(shapes: dict[str, tuple[int, ...]], checkpoint: Checkpoint) -> Gemma3TextModel:
        settings = _config_json(checkpoint)
        if settings is None:
            log.info("No config.json next to %s: using Gemma 3 12B's attention settings", checkpoint.name)
        return Gemma3TextModel(config_from_shapes(shapes, settings))

    def key_map(checkpoint: Checkpoint):
        return gemma3_key_map(checkpoint.keys(), checkpoint.name).get

    return load_model_file(path, family="text", component="text encoder", loader=LOADER, request=request,
                           key_map=key_map, build=build)
