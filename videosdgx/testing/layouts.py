"""Tiny key layouts of families whose model code is not written yet (LTX-2, MAGI-1, Gemma 3).

They follow the official key names of ../shared/specs (ltx2.md §2-3, magi1.md §2) at toy sizes, so file
identification and `videosdgx inspect` can be tested on the real layouts.
"""

from __future__ import annotations

import torch


def _linear(out: dict, name: str, n_in: int, n_out: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = torch.randn(n_out, n_in)
    if bias:
        out[f"{name}.bias"] = torch.randn(n_out)


def ltx2_checkpoint(blocks: int = 2, gated: bool = False, d: int = 16, da: int = 8, seed: int = 0) -> dict:
    """A toy LTX-2 single-file checkpoint: DiT (+ connectors), video VAE, audio VAE, vocoder, text projection."""
    torch.manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    p = "model.diffusion_model."
    _linear(sd, p + "patchify_proj", 8, d)
    _linear(sd, p + "audio_patchify_proj", 8, da)
    for name, dim, mult in (("adaln_single", d, 6), ("audio_adaln_single", da, 6),
                            ("av_ca_video_scale_shift_adaln_single", d, 4), ("av_ca_audio_scale_shift_adaln_single", da, 4),
                            ("av_ca_a2v_gate_adaln_single", d, 1), ("av_ca_v2a_gate_adaln_single", da, 1)):
        _linear(sd, p + f"{name}.emb.timestep_embedder.linear_1", 16, dim)
        _linear(sd, p + f"{name}.emb.timestep_embedder.linear_2", dim, dim)
        _linear(sd, p + f"{name}.linear", dim, mult * dim)
    sd[p + "scale_shift_table"] = torch.randn(2, d)
    _linear(sd, p + "proj_out", d, 8)
    for i in range(blocks):
        b = f"{p}transformer_blocks.{i}."
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            _linear(sd, b + f"attn1.{proj}", d, d)
        sd[b + "attn1.q_norm.weight"] = torch.ones(d)
        if gated:
            _linear(sd, b + "attn1.to_gate_logits", d, 2)
        sd[b + "scale_shift_table"] = torch.randn(6, d)
    for i in range(2):
        _linear(sd, f"{p}video_embeddings_connector.transformer_1d_blocks.{i}.attn1.to_q", 12, 12)
    sd["text_embedding_projection.aggregate_embed.weight"] = torch.randn(12, 24)
    sd["vae.encoder.conv_in.conv.weight"] = torch.randn(4, 3, 3, 3, 3)
    sd["vae.decoder.conv_in.conv.weight"] = torch.randn(4, 8, 3, 3, 3)
    for stat in ("mean-of-means", "std-of-means"):
        sd[f"vae.per_channel_statistics.{stat}"] = torch.randn(8)
        sd[f"audio_vae.per_channel_statistics.{stat}"] = torch.randn(8)
    sd["audio_vae.decoder.conv_in.weight"] = torch.randn(4, 8, 3, 3)
    sd["vocoder.conv_pre.weight"] = torch.randn(4, 8, 7)
    return sd


def ltx2_upsampler(seed: int = 0) -> dict:
    """A toy LTX-2 spatial x2 latent upsampler."""
    torch.manual_seed(seed)
    sd = {"initial_conv.weight": torch.randn(16, 8, 3, 3, 3), "initial_conv.bias": torch.randn(16),
          "final_conv.weight": torch.randn(8, 16, 3, 3, 3), "final_conv.bias": torch.randn(8),
          "upsampler.0.weight": torch.randn(64, 16, 3, 3), "upsampler.0.bias": torch.randn(64)}
    for i in range(2):
        sd[f"res_blocks.{i}.conv1.weight"] = torch.randn(16, 16, 3, 3, 3)
    return sd


def magi1_dit(dim: int = 3072, layers: int = 2, fp8: bool = False, seed: int = 0) -> dict:
    """MAGI-1 DiT keys; `dim` 3072 / 6144 selects the 4.5B / 24B naming, at a toy depth with thin matrices."""
    torch.manual_seed(seed)
    sd = {"x_embedder.weight": torch.randn(dim, 16, 1, 2, 2).to(torch.bfloat16),
          "rope.bands": torch.randn(16), "final_linear.linear.weight": torch.randn(64, 4)}
    for i in range(layers):
        q = torch.randn(8, 4)
        sd[f"videodit_blocks.layers.{i}.self_attention.linear_qkv.q.weight"] = q.to(torch.float8_e4m3fn) if fp8 else q
    return sd


def gemma3_comfy(layers: int = 2, d: int = 16, seed: int = 0) -> dict:
    """Gemma 3 text model in the ComfyUI single-file layout."""
    torch.manual_seed(seed)
    sd = {"model.embed_tokens.weight": torch.randn(32, d), "model.norm.weight": torch.ones(d)}
    for i in range(layers):
        pre = f"model.layers.{i}."
        for proj in ("q", "k", "v", "o"):
            sd[pre + f"self_attn.{proj}_proj.weight"] = torch.randn(d, d)
        sd[pre + "self_attn.q_norm.weight"] = torch.ones(d // 2)
        sd[pre + "pre_feedforward_layernorm.weight"] = torch.ones(d)
    return sd
