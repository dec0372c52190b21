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
    (`transformer` + `config_sections` such as `vae`, `audio_vae`, `vocoder`)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
    prefix = DIT_PREFIX if prefixed else ""
    tensors = {prefix + k: v for k, v in _quantize(random_dit_state(cfg, seed), quantization, dtype).items()}
    tensors.update(parts or {})
    metadata = {"config": json.dumps({"transformer": config_to_metadata(cfg), **(config_sections or {})})}
    return save_safetensors(path, tensors, metadata if with_config else None)


# ------------------------------------------------------------------------------------------------- demo bundles
def bundle_dit_config(version: str, caption_channels: int, audio_in_channels: int, video_in_channels: int
                      ) -> LTX2Config:
    """The tiny DiT of a demo bundle, sized to the tiny text side and media models it runs with."""
    cfg = tiny_dit_config(version)
    return dataclasses.replace(
        cfg, in_channels=video_in_channels, out_channels=video_in_channels, audio_in_channels=audio_in_channels,
        audio_out_channels=audio_in_channels,
        caption_channels=caption_channels if cfg.caption_channels is not None else None,
    )
