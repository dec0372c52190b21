"""Recognise LTX-2 family files: the single-file checkpoint, its split components and the latent upsampler."""

from __future__ import annotations

from videosdgx.runtime.identify import Identity, KeyView, register_detector

DIT_LOADER = "the LTX-2 Loader (VideosDGXLTX2Loader)"
VIDEO_VAE_LOADER = "the LTX-2 Video VAE Loader (VideosDGXLTX2VAELoader)"
AUDIO_VAE_LOADER = "the LTX-2 Audio VAE Loader (VideosDGXLTX2AudioVAELoader)"
UPSAMPLER_LOADER = "the LTX-2 Latent Upsampler Loader (VideosDGXLTX2UpsamplerLoader)"
DIT = "model.diffusion_model."
DIFFUSION_DECODER = "the LTX-2.5 Diffusion Video Decoder Loader (VideosDGXLTX25VideoDecoderLoader)"
DURATION_HEAD = "the LTX-2.5 Duration Head Loader (VideosDGXLTX25DurationHeadLoader)"
AV_MARKER = "av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight"


def _diffusion_decoder(view: KeyView) -> Identity | None:
    """The 2.5 video VAE file (encoder + diffusion decoder, `vae.` or bare keys) or diffusers' decoder model."""
    for prefix, layout in (("vae.", "official"), ("", "split file (bare keys)")):
        if prefix + "decoder.conv_in_x_t.weight" in view:
            if "decoder.det_stages.0.0.attn.to_q.weight" in view:
                layout = "diffusers"
            notes = ("contains the video encoder too",) if view.has_prefix(prefix + "encoder.") else ()
            return Identity("ltx2", "diffusion video decoder", "LTX-2.5", layout, DIFFUSION_DECODER, notes=notes)
    return None


def _dit_version(view: KeyView) -> str:
    blocks = len(view.indices("transformer_blocks."))
    if "transformer_blocks.0.ff.net.0.proj.weight" in view and "transformer_blocks.0.ff.net.0.proj.bias" not in view:
        return f"LTX-2.5 ({blocks} blocks)"
    if view.has_prefix("transformer_blocks.0.attn1.to_gate_logits."):
        return f"LTX-2.3 ({blocks} blocks)"
    return f"LTX-2 19B ({blocks} blocks)" if blocks == 48 else f"LTX-2 ({blocks} blocks)"


@register_detector({
    DIT + AV_MARKER: "LTX-2 checkpoint",
    "vae.per_channel_statistics.mean-of-means": "LTX-2 video VAE",
    "audio_vae.per_channel_statistics.mean-of-means": "LTX-2 audio VAE",
    "initial_conv.weight": "LTX-2 latent upsampler",
    "duration_head.attention_pooler.query_tokens": "LTX-2.5 duration head",
    "vae.decoder.conv_in_x_t.weight": "LTX-2.5 diffusion video decoder",
    "decoder.conv_in_x_t.weight": "LTX-2.5 diffusion video decoder",
})
def detect_ltx2(view: KeyView) -> Identity | None:
    if DIT + AV_MARKER in view:
        parts = ["DiT"] + [name for name, prefix in (("video VAE", "vae."), ("audio VAE", "audio_vae."),
                                                     ("vocoder", "vocoder."),
                                                     ("text projection", "text_embedding_projection."))
                           if view.has_prefix(prefix)]
        variant = _dit_version(view.strip(DIT))
        return Identity("ltx2", "checkpoint", variant, "official single file", DIT_LOADER,
                        notes=("contains: " + ", ".join(parts),))
    decoder = _diffusion_decoder(view)
    if decoder is not None:
        return decoder
    if AV_MARKER in view:
        return Identity("ltx2", "transformer", _dit_version(view), "split component", DIT_LOADER)
    if "vae.per_channel_statistics.mean-of-means" in view:
        return Identity("ltx2", "video VAE", "LTX-2", "official", VIDEO_VAE_LOADER)
    if "per_channel_statistics.mean-of-means" in view and view.has_prefix("decoder.up_blocks."):
        return Identity("ltx2", "video VAE", "LTX-2", "split file (bare keys)", VIDEO_VAE_LOADER)
    if "latents_mean" in view and "decoder.up_blocks.0.upsamplers.0.conv.conv.weight" in view:
        return Identity("ltx2", "video VAE", "LTX-2", "diffusers", VIDEO_VAE_LOADER)
    if "audio_vae.per_channel_statistics.mean-of-means" in view:
        return Identity("ltx2", "audio VAE", "LTX-2", "official", AUDIO_VAE_LOADER)
    if "initial_conv.weight" in view and view.has_prefix("res_blocks.0.") and "final_conv.weight" in view:
        return Identity("ltx2", "latent upsampler", "LTX-2", "official", UPSAMPLER_LOADER)
    if "duration_head.attention_pooler.query_tokens" in view:
        return Identity("ltx2", "duration head", "LTX-2.5", "official", DURATION_HEAD)
    if view.has_prefix("vocoder.") and not view.has_prefix(DIT):
        return Identity("ltx2", "vocoder", "LTX-2", "official", AUDIO_VAE_LOADER)
    return None
