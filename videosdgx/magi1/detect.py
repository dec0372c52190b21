"""Recognise MAGI-1 files: the DiT (4.5B / 24B, bf16 or fp8) and the ViT VAE."""

from __future__ import annotations

import torch

from videosdgx.runtime.identify import Identity, KeyView, register_detector

LOADER = "the MAGI-1 pipeline (videosdgx generate --model magi-1-4.5b-distill)"
DIT_MARKER = "videodit_blocks.layers.0.self_attention.linear_qkv.q.weight"
SIZES = {3072: "MAGI-1 4.5B", 6144: "MAGI-1 24B"}


@register_detector({DIT_MARKER: "MAGI-1 DiT", "decoder.proj_in.weight": "MAGI-1 VAE"})
def detect_magi1(view: KeyView) -> Identity | None:
    if DIT_MARKER in view and "x_embedder.weight" in view:
        dim = view.shape("x_embedder.weight")[0]
        variant = SIZES.get(dim, f"MAGI-1 (width {dim})")
        fp8 = any(d == torch.float8_e4m3fn for d in view.dtypes.values())
        return Identity("magi1", "transformer", variant + (" fp8" if fp8 else ""), "official", LOADER)
    if "encoder.patch_embed.proj.weight" in view and "decoder.proj_in.weight" in view and "encoder.cls_token" in view:
        return Identity("magi1", "VAE", "MAGI-1", "official", LOADER)
    return None
