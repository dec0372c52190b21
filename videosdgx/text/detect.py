"""Recognise text-encoder files: UMT5-XXL (Wan), T5 v1.1 XXL (MAGI-1), Gemma 3 (LTX-2)."""

from __future__ import annotations

from videosdgx.runtime.identify import Identity, KeyView, register_detector

T5_LOADER = "the Wan Text Encoder Loader (VideosDGXWanTextEncoderLoader)"
GEMMA_LOADER = "the LTX-2 text encoder loader (planned: not in this release yet)"
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
    for prefix, layout in (("model.", "ComfyUI"), ("language_model.model.", "HF"), ("model.language_model.", "HF")):
        if prefix + "layers.0.self_attn.q_norm.weight" in view and prefix + "embed_tokens.weight" in view:
            layers = len(view.indices(prefix + "layers."))
            return Identity("text", "text encoder", f"Gemma 3 ({layers} layers)", layout, GEMMA_LOADER)
    return None
