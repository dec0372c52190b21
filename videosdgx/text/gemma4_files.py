"""Gemma 4 text-model layouts and configuration (LTX-2.5's `gemma4-12b-with-proj-ltx-2.5-*.safetensors`).

Layouts (the prefix in front of `embed_tokens`, `layers.N.*`, `norm`), as ltx-core 1.2 maps them
(`_build_gemma4_unified_llm_key_ops`): `model.language_model.` (Hugging Face `Gemma4UnifiedForConditionalGeneration`)
and `model.` (ComfyUI's flattened layout). Vision / audio embedders, `lm_head` and any LTX projection tensors are
not part of the text model.

Shapes give every size, which layers are global (their own head size, or no `v_proj`) and `attention_k_eq_v`.
Sliding window, RoPE bases and the global layers' rotary fraction come from a Hugging Face `config.json` next to
the weights when there is one, else from transformers' Gemma 4 defaults (1024, 1e4 / 1e6, 0.25).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.runtime.errors import CheckpointError, WrongComponentError
from videosdgx.text.gemma4 import Gemma4Config

log = logging.getLogger(__name__)

PREFIXES = ("model.language_model.", "model.")
MARKER = "layers.0.layer_scalar"
DEFAULT_PATTERN = 6  # transformers: every 6th layer global when neither shapes nor config.json tell


def is_gemma4(keys) -> bool:
    keys = set(keys)
    return any({p + "embed_tokens.weight", p + MARKER} <= keys for p in PREFIXES)


def gemma4_key_map(keys, source: str = "This file") -> dict[str, str]:
    """File key -> `Gemma4TextModel` name for every tensor of the text model."""
    keys = set(keys)
    for prefix in PREFIXES:
        if {prefix + "embed_tokens.weight", prefix + MARKER} <= keys:
            parts = ("embed_tokens.", "layers.", "norm.")
            return {k: k[len(prefix):] for k in keys if k.startswith(prefix) and k[len(prefix):].startswith(parts)}
    raise WrongComponentError(
        f"{source} holds no Gemma 4 text model (no `model.language_model.layers.0.layer_scalar` or "
        "`model.layers.0.layer_scalar` tensor). LTX-2.5 needs its own Gemma 4 file, "
        "gemma4-12b-with-proj-ltx-2.5-bf16.safetensors from Lightricks/LTX-2.5."
    )


def config_from_shapes(shapes: dict[str, tuple[int, ...]], settings: dict | None = None) -> Gemma4Config:
    """Sizes and layer kinds from the shapes (in `Gemma4TextModel` names); the rest from `settings` (a Hugging Face
    config dict) or the defaults."""
    layers = 1 + max(int(n.split(".")[1]) for n in shapes if n.startswith("layers."))
    try:
        vocab, hidden = shapes["embed_tokens.weight"]
        head_dims = [shapes[f"layers.{i}.self_attn.q_norm.weight"][0] for i in range(layers)]
        has_v = [f"layers.{i}.self_attn.v_proj.weight" in shapes for i in range(layers)]
        kv_out = [shapes[f"layers.{i}.self_attn.k_proj.weight"][0] for i in range(layers)]
        q_out = shapes["layers.0.self_attn.q_proj.weight"][0]
        intermediate = shapes["layers.0.mlp.gate_proj.weight"][0]
    except KeyError as missing:
        raise CheckpointError(
            f"This Gemma 4 file has no tensor {missing}: it is not a complete Gemma 4 text model (KV-shared small "
            "Gemma 4 models are not supported). Download gemma4-12b-with-proj-ltx-2.5-bf16.safetensors again."
        ) from None
    text = (settings or {}).get("text_config", settings or {})
    local_dim = min(head_dims)
    if len(set(head_dims)) > 1 or not all(has_v):
        global_layers = tuple(d != local_dim or not v for d, v in zip(head_dims, has_v))
    elif "layer_types" in text:
        global_layers = tuple(t == "full_attention" for t in text["layer_types"])
    else:
        global_layers = tuple((i + 1) % DEFAULT_PATTERN == 0 or i == layers - 1 for i in range(layers))
    first_global = global_layers.index(True)
    first_local = global_layers.index(False) if False in global_layers else first_global
    cfg = Gemma4Config(
        vocab=vocab, hidden=hidden, intermediate=intermediate, global_layers=global_layers,
        heads=q_out // head_dims[0], kv_heads=kv_out[first_local] // head_dims[first_local],
        head_dim=head_dims[first_local], global_kv_heads=kv_out[first_global] // head_dims[first_global],
        global_head_dim=head_dims[first_global], k_eq_v=not has_v[first_global],
    )
    return replace(cfg, **hf_attention_settings(text)) if text else cfg


def hf_attention_settings(text: dict) -> dict:
    """Gemma4Config attention fields from a Hugging Face Gemma 4 text config dict."""
    if text.get("use_bidirectional_attention") == "all" or text.get("num_kv_shared_layers", 0):
        raise CheckpointError("This Gemma 4 config uses bidirectional text attention or KV-shared layers, which "
                              "the LTX-2.5 text encoder does not use; is this the LTX-2.5 Gemma 4 file?")
    out = {}
    if "sliding_window" in text:
        out["sliding_window"] = int(text["sliding_window"])
    if "rms_norm_eps" in text:
        out["eps"] = float(text["rms_norm_eps"])
    rope = text.get("rope_parameters") or {}
    if "rope_theta" in rope.get("sliding_attention", {}):
        out["rope_local_theta"] = float(rope["sliding_attention"]["rope_theta"])
    full = rope.get("full_attention", {})
    if "rope_theta" in full:
        out["rope_global_theta"] = float(full["rope_theta"])
    if "partial_rotary_factor" in full:
        out["global_partial_rotary"] = float(full["partial_rotary_factor"])
    return out


def config_json(checkpoint: Checkpoint) -> dict | None:
    """The Hugging Face Gemma 4 config.json beside the weights (another model's config.json is ignored)."""
    candidate = checkpoint.files[0].parent / "config.json"
    if not candidate.is_file():
        return None
    try:
        config = json.loads(candidate.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{candidate} is not valid JSON ({exc}). Download it again or delete it.") from None
    model_type = config.get("text_config", config).get("model_type", config.get("model_type", ""))
    if not str(model_type).startswith("gemma4"):
        log.info("Ignoring %s: it describes a %s model, not Gemma 4", candidate, model_type)
        return None
    return config
