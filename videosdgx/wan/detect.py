"""Recognise Wan 2.1 / 2.2 files (DiT in every published layout, VAEs, CLIP vision) and Wan-based SkyReels V3."""

from __future__ import annotations

from videosdgx.runtime.identify import Identity, KeyView, register_detector

DIT_LOADER = "the Wan Model Loader (VideosDGXWanModelLoader)"
VAE_LOADER = "the Wan VAE Loader (VideosDGXWanVAELoader)"
CLIP_LOADER = "the Wan CLIP Vision Loader (VideosDGXWanCLIPVisionLoader)"
UNSUPPORTED = "nothing in VideosDGX yet (this Wan variant is not supported)"
COMFY_PREFIX = "model.diffusion_model."


def _dit_variant(view: KeyView) -> str:
    """Name the released Wan DiT(s) with this architecture, or describe an unreleased size."""
    from videosdgx.runtime.errors import VideosDGXError
    from videosdgx.wan.transformer import config_from_shapes, matching_presets

    try:
        cfg = config_from_shapes(view.shapes)
    except VideosDGXError:
        return "Wan (unrecognised size)"
    names = [_preset_title(name) for name in matching_presets(cfg)]
    return " or ".join(names) if names else f"Wan {cfg.model_type.upper()} (width {cfg.dim})"


def _preset_title(name: str) -> str:
    """`wan2.2-t2v-a14b` -> `Wan2.2 T2V-A14B expert`."""
    version, *rest = name.split("-")
    title = f"Wan{version[3:]} " + "-".join(part.upper() for part in rest)
    return title + " expert" if name.endswith("a14b") else title


def _is_skyreels_a2v(view: KeyView) -> bool:
    """SkyReels V3 A2V-19B: audio projector with its first-frame and video-frame inputs, per-block audio
    cross-attention (the MultiTalk design; MultiTalk / InfiniteTalk files share this layout)."""
    return "audio_proj.proj1_vf.weight" in view and "blocks.0.audio_cross_attn.kv_linear.weight" in view


def _skyreels_notes(view: KeyView, layout: str) -> tuple[str, ...]:
    """SkyReels V3 R2V-14B / V2V-14B have Wan2.1 T2V-14B's keys and shapes; only their layout tells them apart."""
    if view.shapes.get("patch_embedding.weight", (0, 0))[1:2] != (16,) or "img_emb.proj.0.weight" in view:
        return ()
    if view.shapes.get("head.modulation", (0, 0, 0))[-1] != 5120:
        return ()
    if layout == "diffusers":
        return ("SkyReels V3 R2V-14B ships this architecture with these diffusers keys: load an R2V file with the "
                "SkyReels V3 R2V loader.",)
    return ("SkyReels V3 V2V-14B (extension / shot switching) ships this architecture with these keys: load a V2V "
            "file with the SkyReels V3 V2V loader.",)


def _dit(view: KeyView, layout: str) -> Identity:
    if _is_skyreels_a2v(view):
        return Identity("skyreels_v3", "transformer", "SkyReels V3 A2V-19B talking avatar", layout,
                        "the SkyReels V3 avatar loader (no nodes in this release yet)")
    from videosdgx.wan.transformer import UNSUPPORTED_VARIANTS

    for marker, name in UNSUPPORTED_VARIANTS.items():
        if view.has_prefix(marker + "."):
            return Identity("wan", "transformer", name, layout, UNSUPPORTED)
    return Identity("wan", "transformer", _dit_variant(view), layout, DIT_LOADER, notes=_skyreels_notes(view, layout))


@register_detector({
    "blocks.0.self_attn.q.weight": "Wan DiT",
    "blocks.0.attn1.to_q.weight": "Wan DiT (diffusers layout)",
    "decoder.middle.0.residual.0.gamma": "Wan 2.1 VAE",
    "decoder.upsamples.0.upsamples.0.residual.2.weight": "Wan 2.2 VAE",
    "vision_model.encoder.layers.0.self_attn.q_proj.weight": "CLIP vision model",
})
def detect_wan(view: KeyView) -> Identity | None:
    if view.has_prefix(COMFY_PREFIX + "blocks.0.self_attn."):
        return _dit(view.strip(COMFY_PREFIX), "ComfyUI checkpoint (model.diffusion_model. prefix)")
    if "blocks.0.self_attn.q.weight" in view and "head.modulation" in view:
        return _dit(view, "official (same keys as Comfy-Org repackaged)")
    if "blocks.0.attn1.to_q.weight" in view and "condition_embedder.time_proj.weight" in view:
        from videosdgx.wan.keys import to_official_key

        official = {to_official_key(k, "diffusers"): v for k, v in view.shapes.items()}
        dtypes = {to_official_key(k, "diffusers"): v for k, v in view.dtypes.items()}
        official.pop(None, None)
        dtypes.pop(None, None)
        return _dit(KeyView(official, dtypes), "diffusers")
    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in view:
        return Identity("wan", "VAE", "Wan 2.2", "official", VAE_LOADER)
    if "decoder.middle.0.residual.0.gamma" in view:
        return Identity("wan", "VAE", "Wan 2.1", "official", VAE_LOADER)
    if "decoder.up_blocks.0.resnets.0.norm1.gamma" in view and "post_quant_conv.weight" in view:
        z = view.shape("post_quant_conv.weight")[0]
        return Identity("wan", "VAE", "Wan 2.2" if z == 48 else "Wan 2.1", "diffusers", VAE_LOADER)
    if view.has_prefix("vision_model.encoder.layers.") or "visual.transformer.resblocks.0.attn.in_proj_weight" in view:
        layers = len(view.indices("vision_model.encoder.layers.")) or len(view.indices("visual.transformer.resblocks."))
        layout = "HF / ComfyUI" if view.has_prefix("vision_model.") else "open_clip"
        return Identity("wan", "CLIP vision", f"CLIP ViT ({layers} layers)", layout, CLIP_LOADER)
    if "visual.transformer.0.attn.to_qkv.weight" in view:
        layers = len(view.indices("visual.transformer."))
        return Identity("wan", "CLIP vision", f"CLIP ViT ({layers} layers)", "Wan official (.pth)", CLIP_LOADER)
    return None
