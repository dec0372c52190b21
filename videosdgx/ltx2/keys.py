"""Key names of the LTX-2 DiT: the official single file, split transformer files, and diffusers' layout.

The official single file stores the DiT under `model.diffusion_model.` next to the text connectors (same prefix,
text side), the VAEs, the vocoder and the text projection. Split transformer files (Kijai / Comfy-Org) keep the
DiT keys with or without that prefix. Our module names are the official names without the prefix.
"""

from __future__ import annotations

from collections.abc import Iterable

DIT_PREFIX = "model.diffusion_model."
TEXT_SIDE = ("video_embeddings_connector.", "audio_embeddings_connector.")

# Whole-component renames official -> diffusers `LTX2VideoTransformer3DModel` (diffusers'
# `convert_ltx2_transformer_to_diffusers` plus the 2.3 prompt AdaLN).
_TOP_LEVEL = {
    "patchify_proj": "proj_in",
    "audio_patchify_proj": "audio_proj_in",
    "adaln_single": "time_embed",
    "audio_adaln_single": "audio_time_embed",
    "prompt_adaln_single": "prompt_adaln",
    "audio_prompt_adaln_single": "audio_prompt_adaln",
    "av_ca_video_scale_shift_adaln_single": "av_cross_attn_video_scale_shift",
    "av_ca_audio_scale_shift_adaln_single": "av_cross_attn_audio_scale_shift",
    "av_ca_a2v_gate_adaln_single": "av_cross_attn_video_a2v_gate",
    "av_ca_v2a_gate_adaln_single": "av_cross_attn_audio_v2a_gate",
}
_IN_BLOCK = {
    "scale_shift_table_a2v_ca_video": "video_a2v_cross_attn_scale_shift_table",
    "scale_shift_table_a2v_ca_audio": "audio_a2v_cross_attn_scale_shift_table",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}


def to_diffusers_key(key: str) -> str:
    """Official DiT key (no prefix) -> diffusers key."""
    head, dot, rest = key.partition(".")
    if head in _TOP_LEVEL:
        return _TOP_LEVEL[head] + dot + rest
    parts = key.split(".")
    return ".".join(_IN_BLOCK.get(part, part) for part in parts)


def dit_key(key: str, prefixed: bool) -> str | None:
    """Module name of a stored key, or None for keys that are not DiT weights (other components of a single file,
    the text connectors stored under the DiT prefix)."""
    if prefixed:
        if not key.startswith(DIT_PREFIX):
            return None
        key = key[len(DIT_PREFIX):]
    return None if key.startswith(TEXT_SIDE) else key


def has_dit_prefix(keys: Iterable[str]) -> bool:
    return any(key.startswith(DIT_PREFIX) for key in keys)
