"""Tiny random LTX-2 checkpoints in the official single-file layout, with the embedded `config` metadata.

The DiT keeps every code path of the release (split RoPE with padding, distinct video / audio head counts,
cross-modal RoPE, 19B caption projection or 2.3 gated attention + prompt AdaLN) at toy widths. Its weights can be
stored bf16, fp8 (`weight_scale` + `input_scale`, as Lightricks' -fp8 files) or NVFP4 (Lightricks' -fp4 layout).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from videosdgx.ltx2.config import LTX2Config, config_to_metadata
from videosdgx.ltx2.keys import DIT_PREFIX
from videosdgx.ltx2.transformer import LTX2Model
from videosdgx.runtime.fp8 import quantize_fp8
from videosdgx.runtime.nvfp4 import quantize_nvfp4
from videosdgx.testing.files import save_safetensors

QUANTIZATIONS = ("none", "fp8", "nvfp4")


def tiny_dit_config(version: str = "19B") -> LTX2Config:
    """Video 4 heads x 8, audio 2 heads x 8, 2 blocks; 2.3 adds gated attention and the 9-row AdaLN."""
    cfg = LTX2Config(num_heads=4, head_dim=8, audio_num_heads=2, audio_head_dim=8, num_layers=2, in_channels=8,
                     out_channels=8, audio_in_channels=8, audio_out_channels=8, cross_attention_dim=32,
                     audio_cross_attention_dim=16, caption_channels=24, av_ca_timestep_scale_multiplier=1000.0)
    if version == "2.3":
        return dataclasses.replace(cfg, gated_attention=True, cross_attention_adaln=True, caption_channels=None)
    if version != "19B":
        raise ValueError(f"unknown LTX-2 version {version!r}")
    return cfg


def random_dit_state(cfg: LTX2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Float32 DiT weights under our (= official, unprefixed) names, scaled so activations stay O(1)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LTX2Model(cfg).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        values = torch.randn(shape, generator=generator)
        if key.endswith("norm.weight"):
            values = 1 + 0.2 * values
        elif len(shape) == 2 and "table" not in key:
            values = values / shape[1] ** 0.5
        else:
            values = 0.3 * values
        state[key] = values
    return state


def _quantize(state: dict[str, torch.Tensor], quantization: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Store the block Linears' weights as Lightricks' quantised files do; everything else in `dtype`."""
    out = {}
    for key, value in state.items():
        linear = key.startswith("transformer_blocks.") and key.endswith(".weight") and value.ndim == 2 \
            and "norm" not in key and "table" not in key
        if quantization == "none" or not linear:
            out[key] = value.to(dtype)
            continue
        base = key.removesuffix("weight")
        if quantization == "fp8":
            out[key], out[base + "weight_scale"] = quantize_fp8(value)
        else:
            out[key], out[base + "weight_scale"], out[base + "weight_scale_2"] = quantize_nvfp4(value, "ltx2")
        out[base + "input_scale"] = value.abs().amax().float() / 448
    return out


def write_ltx2_checkpoint(path: Path, cfg: LTX2Config, seed: int = 0, quantization: str = "none",
                          parts: dict[str, torch.Tensor] | None = None, config_sections: dict | None = None,
                          prefixed: bool = True, with_config: bool = True, dtype: torch.dtype = torch.bfloat16,
                          ) -> Path:
    """An LTX-2 file: the DiT (under `model.diffusion_model.` unless `prefixed` is False, i.e. a split transformer
    file) plus `parts` (other components, already under their official keys) and the `config` metadata
    (ours under `transformer`, merged with `config_sections` such as the connectors' `transformer` keys, `vae`,
    `vocoder`)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
    prefix = DIT_PREFIX if prefixed else ""
    tensors = {prefix + k: v for k, v in _quantize(random_dit_state(cfg, seed), quantization, dtype).items()}
    tensors.update(parts or {})
    sections = dict(config_sections or {})
    transformer = {**sections.pop("transformer", {}), **config_to_metadata(cfg)}
    metadata = {"config": json.dumps({"transformer": transformer, **sections})}
    return save_safetensors(path, tensors, metadata if with_config else None)


# ------------------------------------------------------------------------------------------------- demo bundles
VIDEO_LATENT, AUDIO_LATENT, MEL_BINS = 8, 4, 16  # the media writer's tiny models: audio tokens 4 x 16 / 4 wide
DEMO_BUNDLES = {"ltx-2-19b-distilled": "19B", "ltx-2.3-22b-distilled": "2.3", "ltx-2-19b-dev": "19B",
                "ltx-2-19b-dev-fp8": "19B", "ltx-2-19b-dev-fp4": "19B", "ltx-2.3-22b-dev": "2.3"}


def text_config(version: str, dit: LTX2Config):
    """Tiny text side whose outputs fit `dit`: 19B connectors as wide as Gemma (the DiT projects them), 2.3
    per-modality projections straight to the DiT's video / audio widths (gated connectors)."""
    from videosdgx.ltx2.connectors import ConnectorConfig
    from videosdgx.testing.ltx2_text import TINY_GEMMA, conditioner_config
    from videosdgx.ltx2.text_conditioner import TextConditionerConfig

    if version == "19B":
        return conditioner_config("19b")
    video = ConnectorConfig(heads=dit.num_heads, head_dim=dit.head_dim, layers=2, registers=4, gated=True)
    audio = ConnectorConfig(heads=dit.audio_num_heads, head_dim=dit.audio_head_dim, layers=2, registers=4, gated=True)
    return TextConditionerConfig(TINY_GEMMA.hidden, TINY_GEMMA.layers + 1, True, video, audio)


def demo_dit_config(version: str) -> LTX2Config:
    from videosdgx.testing.ltx2_text import TINY_GEMMA

    cfg = tiny_dit_config(version)
    return dataclasses.replace(
        cfg, in_channels=VIDEO_LATENT, out_channels=VIDEO_LATENT, audio_in_channels=AUDIO_LATENT * MEL_BINS // 4,
        audio_out_channels=AUDIO_LATENT * MEL_BINS // 4,
        caption_channels=TINY_GEMMA.hidden if cfg.caption_channels is not None else None,
    )


def write_demo_checkpoint(path: Path, version: str = "19B", seed: int = 0, quantization: str = "none") -> Path:
    """A whole tiny single-file checkpoint: DiT, text projection + connectors, video VAE, audio VAE, vocoder."""
    from videosdgx.testing.ltx2_media import media_checkpoint_state, media_config
    from videosdgx.testing.ltx2_text import conditioner_metadata, text_side_state

    dit = demo_dit_config(version)
    text = text_config(version, dit)
    layout = "19b" if version == "19B" else "2.3"
    parts = {**text_side_state(text, seed + 100),
             **media_checkpoint_state(layout, seed + 200, VIDEO_LATENT, AUDIO_LATENT, MEL_BINS)}
    sections = {**json.loads(conditioner_metadata(text)["config"]), **media_config(layout)}
    return write_ltx2_checkpoint(path, dit, seed, quantization, parts=parts, config_sections=sections)


def distilled_lora_state(cfg: LTX2Config, rank: int = 4, seed: int = 0, std: float = 0.05
                         ) -> dict[str, torch.Tensor]:
    """A LoRA in the layout of Lightricks' distilled LoRA (`diffusion_model.transformer_blocks.N.<linear>.lora_A
    .weight` / `.lora_B.weight`, no alpha) over every Linear of every block of `cfg`'s DiT, video and audio."""
    with torch.device("meta"):
        model = LTX2Model(cfg)
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, module in model.named_modules():
        if name.startswith("transformer_blocks.") and isinstance(module, torch.nn.Linear):
            key = f"diffusion_model.{name}"
            out[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * std
            out[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * std
    return out


def write_ltx2_bundle(bundle: str, models_dir: str | Path, seed: int = 0) -> None:
    """The family's `demo` hook: tiny random files for every entry of `bundle` at
    `<models_dir>/<folder>/<filename>`, in the published layouts (a video made from them is noise)."""
    from videosdgx.manifest import load_manifest
    from videosdgx.testing.ltx2_media import upsampler_state
    from videosdgx.testing.ltx2_text import gemma_sentencepiece, write_gemma3

    from videosdgx.testing import ltx25

    if bundle in ltx25.DEMO_BUNDLES:
        return ltx25.write_ltx25_bundle(bundle, models_dir, seed)
    if bundle not in DEMO_BUNDLES:
        raise NotImplementedError(f"no tiny demo files for {bundle}; demos exist for {', '.join(DEMO_BUNDLES)}")
    version = DEMO_BUNDLES[bundle]
    for entry in load_manifest().bundle_entries(bundle):
        path = Path(models_dir) / entry.folder / entry.filename
        if entry.role == "checkpoint":
            quantization = "fp8" if "fp8" in entry.filename else "nvfp4" if "fp4" in entry.filename else "none"
            write_demo_checkpoint(path, version, seed, quantization=quantization)
        elif entry.role == "lora":
            save_safetensors(path, distilled_lora_state(demo_dit_config(version), seed=seed + 3))
        elif entry.role == "text_encoder":
            storage = "fp8_scaled" if "fp8_scaled" in entry.filename else "bf16"
            write_gemma3(path, "comfy", storage, seed=seed + 1, spiece=gemma_sentencepiece())
        elif entry.role == "upsampler":
            save_safetensors(path, upsampler_state(seed + 2, VIDEO_LATENT))
        else:
            raise NotImplementedError(f"no tiny fixture for {entry.filename} ({entry.role})")
