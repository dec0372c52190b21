"""Recognise the avatar's wav2vec2 audio encoder (`chinese-wav2vec2-base`, Hugging Face keys, with or without the
`wav2vec2.` prefix, old `weight_g/weight_v` or new parametrization names). The SkyReels V3 DiTs are identified in
videosdgx/wan/detect.py (they are Wan DiTs)."""

from __future__ import annotations

from videosdgx.runtime.identify import Identity, KeyView, register_detector

W2V_LOADER = "the SkyReels V3 avatar loaders (load_wav2vec2)"
MARKER = "encoder.pos_conv_embed.conv."


@register_detector({
    "feature_extractor.conv_layers.0.conv.weight": "wav2vec 2.0 audio encoder",
    "wav2vec2.feature_extractor.conv_layers.0.conv.weight": "wav2vec 2.0 audio encoder (pre-training layout)",
})
def detect_wav2vec2(view: KeyView) -> Identity | None:
    for prefix, layout in (("", "HF Wav2Vec2Model"), ("wav2vec2.", "HF Wav2Vec2ForPreTraining")):
        if view.has_prefix(prefix + MARKER) and prefix + "feature_extractor.conv_layers.0.conv.weight" in view:
            layers = len(view.indices(prefix + "encoder.layers."))
            width = view.shape(prefix + "feature_projection.projection.weight")[0]
            return Identity("skyreels_v3", "audio encoder", f"wav2vec 2.0 ({layers} layers, width {width})", layout,
                            W2V_LOADER)
    return None
