"""Tiny LTX-2.5 files in the published layouts: the Gemma 4 text encoder with its bundled projections and
connectors (`gemma4-12b-with-proj-ltx-2.5-*`; Hugging Face or ComfyUI-flat language-model names). Weights are random.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from videosdgx.ltx2.config import LTX2Config
from videosdgx.ltx2.duration_head25 import DurationHead
from videosdgx.ltx2.text_conditioner import TextConditionerConfig
from videosdgx.testing.ltx2 import (AUDIO_LATENT, MEL_BINS, VIDEO_LATENT, demo_dit_config, text_config,
                                     tiny_dit_config, write_ltx2_checkpoint)
from videosdgx.testing.files import random_like_state_dict, save_safetensors
from videosdgx.testing.ltx2_text import conditioner_config, conditioner_metadata, store, text_side_state
from videosdgx.text.gemma4 import Gemma4Config, Gemma4TextModel

# Two kinds of layers with distinct head sizes / KV heads, values = keys on global layers, a window (4) shorter
# than the test prompts.
TINY_GEMMA4 = Gemma4Config(vocab=400, hidden=32, intermediate=48, global_layers=(False, False, True) * 2, heads=4,
                           kv_heads=2, head_dim=16, global_kv_heads=1, global_head_dim=24, k_eq_v=True,
                           sliding_window=4)
GEMMA4_PREFIX = {"hf": "model.language_model.", "comfy": "model."}


def gemma4_state(cfg: Gemma4Config = TINY_GEMMA4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp32 weights under `Gemma4TextModel` (= Hugging Face `Gemma4UnifiedTextModel`) names."""
    with torch.device("meta"):
        model = Gemma4TextModel(cfg)
    state = random_like_state_dict(model, seed)
    return {k: (v.abs() + 0.5 if k.endswith("layer_scalar") else v) for k, v in state.items()}


def hf_gemma4_text_config(cfg: Gemma4Config) -> dict:
    """Keyword arguments of transformers' `Gemma4UnifiedTextConfig` (and the `text_config` of a config.json)."""
    return {
        "model_type": "gemma4_unified_text", "vocab_size": cfg.vocab, "hidden_size": cfg.hidden,
        "intermediate_size": cfg.intermediate, "num_hidden_layers": cfg.layers, "num_attention_heads": cfg.heads,
        "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "global_head_dim": cfg.global_head_dim,
        "num_global_key_value_heads": cfg.global_kv_heads, "attention_k_eq_v": cfg.k_eq_v,
        "sliding_window": cfg.sliding_window, "rms_norm_eps": cfg.eps,
        "layer_types": ["full_attention" if g else "sliding_attention" for g in cfg.global_layers],
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": cfg.rope_local_theta},
            "full_attention": {"rope_type": "proportional", "rope_theta": cfg.rope_global_theta,
                               "partial_rotary_factor": cfg.global_partial_rotary},
        },
    }


def ltx25_conditioner_config(cfg: Gemma4Config = TINY_GEMMA4) -> TextConditionerConfig:
    """LTX-2.3-style text side (per-modality projections, gated connectors) fed by `cfg`'s hidden states."""
    return conditioner_config("2.3", hidden=cfg.hidden, layers=cfg.layers + 1)


def write_ltx25_text_encoder(path: Path, layout: str = "hf", cfg: Gemma4Config = TINY_GEMMA4, seed: int = 0,
                             storage: torch.dtype = torch.float32, text_side: bool = True,
                             config_json: bool = False, side: TextConditionerConfig | None = None,
                             quantized: str | None = None) -> Path:
    """`gemma4-12b-with-proj-ltx-2.5-*.safetensors`: Gemma 4 + projections + connectors `side` (+ embedded
    connector config). `config_json` also writes the Hugging Face config.json beside it; `quantized`
    ("fp8_scaled", ComfyUI's mixed-precision layout) stores Gemma's Linear weights in fp8."""
    gemma = gemma4_state(cfg, seed)
    tensors = {GEMMA4_PREFIX[layout] + k: v for k, v in (store(gemma, quantized) if quantized else gemma).items()}
    side = side or ltx25_conditioner_config(cfg)
    metadata = None
    if text_side:
        tensors.update(text_side_state(side, seed + 1))
        metadata = conditioner_metadata(side)
    tensors = {k: v.to(storage) if v.is_floating_point() and v.element_size() > 1 else v for k, v in tensors.items()}
    if config_json:
        config = {"model_type": "gemma4_unified", "text_config": hf_gemma4_text_config(cfg)}
        (Path(path).parent / "config.json").write_text(json.dumps(config))
    return save_safetensors(path, tensors, metadata=metadata)


def tiny_dit25_config() -> LTX2Config:
    """The tiny LTX-2.3 DiT with the 2.5 options: no video feed-forward bias, no prompt AdaLN MLP (static
    cross-attention K/V modulation), the keyframe marker embedding."""
    return dataclasses.replace(tiny_dit_config("2.3"), ff_bias=False, prompt_adaln=False, keyframes_embedding=True)


def write_duration_head(path: Path, video_dim: int, audio_dim: int, hidden: int = 16, queries: int = 2,
                        heads: int = 4, mlp_hidden: int = 12, seed: int = 0) -> Path:
    """`ltx-2.5-duration-head-*.safetensors`: `duration_head.*` in ltx-core's (nn.MultiheadAttention) layout, with
    the head count in the embedded config."""
    with torch.device("meta"):
        head = DurationHead(video_dim, audio_dim, hidden, queries, heads, mlp_hidden)
    state = {"duration_head." + k: v for k, v in random_like_state_dict(head, seed).items()}
    config = {"transformer": {"cross_attention_dim": video_dim, "audio_cross_attention_dim": audio_dim},
              "duration_head": {"num_pooler_heads": heads}}
    return save_safetensors(path, state, metadata={"config": json.dumps(config)})


# ------------------------------------------------------------------------------------------------- demo bundle
DEMO_BUNDLES = ("ltx-2.5-22b-distilled", "ltx-2.5-22b-dev")


def demo_dit25_config() -> LTX2Config:
    """The LTX-2.3 demo DiT (fits the tiny media models) with the 2.5 options."""
    return dataclasses.replace(demo_dit_config("2.3"), ff_bias=False, prompt_adaln=False, keyframes_embedding=True)


def write_ltx25_bundle(bundle: str, models_dir: str | Path, seed: int = 0) -> None:
    """Tiny random files for every entry of the LTX-2.5 bundle, at `<models_dir>/<folder>/<filename>`: split
    transformer (embedded config), Gemma 4 + projections, Gemma tokenizer, bare-key conv video VAE, diffusion video
    VAE (raw layout, ltx25_decoder.py), audio VAE + vocoder, duration head, spatial and temporal x2 latent upscalers
    (bare keys, ltx-core `config` header), the distilled LoRA (Lightricks' layout)."""
    from videosdgx.manifest import load_manifest
    from videosdgx.testing.ltx2 import distilled_lora_state
    from videosdgx.testing.ltx25_decoder import DEMO_DECODER, write_diffusion_vae
    from videosdgx.testing.ltx2_media import (audio_vae_state, upsampler_header, upsampler_state, video_vae_state,
                                              vocoder_state)
    from videosdgx.testing.ltx2_text import write_gemma_tokenizer

    dit = demo_dit25_config()
    for entry in load_manifest().bundle_entries(bundle):
        path = Path(models_dir) / entry.folder / entry.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.role == "dit":
            write_ltx2_checkpoint(path, dit, seed, prefixed=False)
        elif entry.role == "text_encoder":
            write_ltx25_text_encoder(path, "comfy", seed=seed + 1, storage=torch.bfloat16,
                                     side=text_config("2.3", dit))
        elif entry.role == "tokenizer":
            write_gemma_tokenizer(path.parent)
        elif entry.role == "vae":
            save_safetensors(path, video_vae_state("2.3", seed + 2, VIDEO_LATENT, prefix=""))
        elif entry.role == "video_decoder":
            write_diffusion_vae(path, DEMO_DECODER, seed + 6)
        elif entry.role == "audio_vae":
            save_safetensors(path, audio_vae_state(seed + 3, AUDIO_LATENT, MEL_BINS)
                             | vocoder_state("2.3", seed + 4, MEL_BINS))
        elif entry.role == "duration_head":
            write_duration_head(path, dit.dim, dit.audio_dim, seed=seed + 5)
        elif entry.role in ("upsampler", "temporal_upsampler"):
            mode = "spatial" if entry.role == "upsampler" else "temporal"
            state = upsampler_state(seed + 7, VIDEO_LATENT, mode=mode)
            save_safetensors(path, state, metadata=upsampler_header(state))
        elif entry.role == "lora":
            save_safetensors(path, distilled_lora_state(dit, seed=seed + 8))
        else:
            raise NotImplementedError(f"no tiny fixture for {entry.filename} ({entry.role})")
