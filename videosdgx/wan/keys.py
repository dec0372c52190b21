"""Key names of the published Wan DiT layouts and their mapping to the official (Wan-AI release) names.

Layouts: "official" (Wan-AI repos, Comfy-Org split files, Kijai fp8 files), "comfyui" (the same names under
`model.diffusion_model.`, as in full ComfyUI checkpoints) and "diffusers" (`WanTransformer3DModel`).
"""

import re
from collections.abc import Iterable

from videosdgx.runtime.errors import CheckpointError, WrongComponentError

COMFYUI_PREFIX = "model.diffusion_model."

# Module paths, official -> diffusers, matched on whole dotted components. The cross-attention pre-norm is
# `norm3` in the official layout and `norm2` in diffusers (whose `norm3` is the parameter-free FFN norm).
_TOP_LEVEL = {
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.modulation": "scale_shift_table",
    "head.head": "proj_out",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
}
_IN_BLOCK = {
    **{f"self_attn.{name}": f"attn1.{renamed}" for name, renamed in
       {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"}.items()},
    **{f"cross_attn.{name}": f"attn2.{renamed}" for name, renamed in
       {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k",
        "k_img": "add_k_proj", "v_img": "add_v_proj", "norm_k_img": "norm_added_k"}.items()},
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}
_TOP_LEVEL_INVERSE = {new: old for old, new in _TOP_LEVEL.items()}
_IN_BLOCK_INVERSE = {new: old for old, new in _IN_BLOCK.items()}
_BLOCK_KEY = re.compile(r"(blocks\.\d+\.)(.*)")

# Keys that carry no weight of the model: the scaled-fp8 marker and per-layer activation scales.
_IGNORED_KEYS = {"scaled_fp8"}
_IGNORED_SUFFIXES = (".scale_input",)
# diffusers creates this norm but never uses it.
_IGNORED_DIFFUSERS_SUFFIXES = (".norm_added_q.weight",)


def _rename(key: str, top_level: dict[str, str], in_block: dict[str, str]) -> str:
    """Replace the leading module path of `key` (inside `blocks.N.` if present); unknown keys pass unchanged."""
    match = _BLOCK_KEY.fullmatch(key)
    prefix, rest, table = (match[1], match[2], in_block) if match else ("", key, top_level)
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return prefix + new + rest[len(old):]
    return key


def to_diffusers_key(key: str) -> str:
    """Official key -> diffusers `WanTransformer3DModel` key."""
    return _rename(key, _TOP_LEVEL, _IN_BLOCK)


def from_diffusers_key(key: str) -> str:
    """diffusers `WanTransformer3DModel` key -> official key (the exact inverse of `to_diffusers_key`)."""
    return _rename(key, _TOP_LEVEL_INVERSE, _IN_BLOCK_INVERSE)


def detect_dit_layout(keys: Iterable[str]) -> str:
    """"official", "comfyui" or "diffusers"; raises WrongComponentError if no Wan DiT layout fits."""
    keys = list(keys)
    if any(key.startswith(COMFYUI_PREFIX) for key in keys):
        return "comfyui"
    if "scale_shift_table" in keys or any(key.startswith("condition_embedder.") for key in keys):
        return "diffusers"
    if "head.modulation" in keys or "patch_embedding.weight" in keys:
        return "official"
    raise WrongComponentError(
        "This file is not a Wan diffusion model (no Wan DiT keys found). "
        "Choose a Wan 2.1/2.2 file from the diffusion_models folder."
    )


def to_official_key(key: str, layout: str) -> str | None:
    """Official name of a stored key, or None for keys to ignore (scaled-fp8 marker, `*.scale_input`, other
    components of a full ComfyUI checkpoint, unused diffusers norms). `X.scale_weight` maps to the official
    `X.scale_weight` so the loader can dequantize `X.weight` with it."""
    if layout == "comfyui":
        if not key.startswith(COMFYUI_PREFIX):
            return None
        key = key[len(COMFYUI_PREFIX):]
    elif layout == "diffusers":
        if key.endswith(_IGNORED_DIFFUSERS_SUFFIXES):
            return None
        key = from_diffusers_key(key)
    elif layout != "official":
        raise ValueError(f"unknown Wan DiT layout {layout!r}")
    if key in _IGNORED_KEYS or key.endswith(_IGNORED_SUFFIXES):
        return None
    return key


def normalize_dit_state_dict_keys(keys: Iterable[str]) -> dict[str, str]:
    """Map every kept key of a Wan DiT file to its official name: `{official_key: stored_key}`.

    Detects the layout, strips the ComfyUI prefix, renames diffusers keys and drops ignored keys.
    """
    keys = list(keys)
    layout = detect_dit_layout(keys)
    mapping: dict[str, str] = {}
    for key in keys:
        official = to_official_key(key, layout)
        if official is None:
            continue
        if official in mapping:
            raise CheckpointError(f"The file stores {official!r} twice ({mapping[official]!r} and {key!r}).")
        mapping[official] = key
    return mapping
