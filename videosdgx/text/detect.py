"""Recognise text-encoder files: UMT5-XXL (Wan), T5 v1.1 XXL (MAGI-1), Gemma 3 (LTX-2)."""

from __future__ import annotations

from videosdgx.runtime.identify import Identity, KeyView, register_detector

T5_LOADER = "the Wan Text Encoder Loader (VideosDGXWanTextEncoderLoader)"
GEMMA_LOADER = "the LTX-2 text encoder loader (videosdgx.ltx2.text_encoder)"
NOT_USED = "nothing: VideosDGX does not use this text encoder"
GEMMA_PREFIXES = (("model.language_model.", "HF"), ("language_model.model.", "HF"), ("model.", "ComfyUI"))
HF_BLOCK = "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight"


@register_detector({
    HF_BLOCK.format(0): "T5 / UMT5 text encoder",
    "blocks.0.pos_embedding.embedding.weight": "UMT5 text encoder (Wan .pth layout)",
    "model.layers.0.self_attn.q_norm.weight": "Gemma 3 text encoder",
})
def detect_text_encoder(view: KeyView) -> Identity | None:
    if HF_BLOCK.format(0) in view:
        layers = len(view.indices("encoder.block."))
        if HF_BLOCK.format(1) in view:
            return Identity("text", "text encoder", f"UMT5 ({layers} layers)", "HF / ComfyUI", T5_LOADER)
        return Identity("text", "text encoder", f"T5 ({layers} layers)", "HF / ComfyUI",
                        "the MAGI-1 pipeline (videosdgx generate --model magi-1-4.5b-distill)")
    if "blocks.0.pos_embedding.embedding.weight" in view and "token_embedding.weight" in view:
        layers = len(view.indices("blocks."))
        return Identity("text", "text encoder", f"UMT5 ({layers} layers)", "Wan official (.pth)", T5_LOADER)
    for prefix, layout in GEMMA_PREFIXES:
        needed = (prefix + "embed_tokens.weight", prefix + "layers.0.pre_feedforward_layernorm.weight")
        if not all(key in view for key in needed):
            continue
        layers = len(view.indices(prefix + "layers."))
        if prefix + "layers.0.self_attn.q_norm.weight" in view:
            return Identity("text", "text encoder", f"Gemma 3 ({layers} layers)", layout, GEMMA_LOADER)
        return Identity("text", "text encoder", f"Gemma 2 ({layers} layers)", layout, NOT_USED)
    return None


LTX2_TEXT_LOADER = "the LTX-2 text encoder loader (videosdgx.ltx2.text_encoder), as its text projection file"
_CONNECTOR_PREFIXES = {f"{dit}{modality}_embeddings_connector.": f"{modality} connector"
                       for dit in ("", "model.diffusion_model.") for modality in ("video", "audio")}


@register_detector({
    "text_embedding_projection.aggregate_embed.weight": "LTX-2 text projection",
    "text_embedding_projection.video_aggregate_embed.weight": "LTX-2.3 text projection",
    "model.diffusion_model.video_embeddings_connector.learnable_registers": "LTX-2 embeddings connector",
})
def detect_ltx2_text_side(view: KeyView) -> Identity | None:
    """LTX-2's text projection and / or embeddings connectors stored without the DiT (split text-side files)."""
    if view.has_prefix("model.diffusion_model.transformer_blocks.") or view.has_prefix("transformer_blocks."):
        return None
    parts = ["text projection"] if view.has_prefix("text_embedding_projection.") else []
    parts += sorted({name for prefix, name in _CONNECTOR_PREFIXES.items() if view.has_prefix(prefix)}, reverse=True)
    if not parts:
        return None
    gated = any(view.has_prefix(p + "transformer_1d_blocks.0.attn1.to_gate_logits.") for p in _CONNECTOR_PREFIXES)
    version = "LTX-2.3" if gated or view.has_prefix("text_embedding_projection.video_aggregate_embed.") else "LTX-2"
    return Identity("ltx2", "text projection", version, "official names", LTX2_TEXT_LOADER,
                    notes=("contains: " + ", ".join(parts),))
