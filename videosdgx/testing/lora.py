"""Tiny random LoRAs for a Wan DiT in the published layouts (kohya / musubi, official, lightx2v, diffusers / PEFT),
written as safetensors so the real identification and LoRA loading run on them.

Targets are taken from the model itself (its Linear layers and their shapes), so a LoRA fits any tiny config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from videosdgx.testing.files import save_safetensors
from videosdgx.wan.keys import to_diffusers_key

FORMATS = ("kohya", "official", "lightx2v", "diffusers")
BLOCK_LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                 "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img", "ffn.0", "ffn.2")
TOP_LINEARS = ("text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2",
               "time_projection.1")
BLOCK_NORMS = ("self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q", "cross_attn.norm_k", "norm3")


def _linears(model: nn.Module, names: tuple[str, ...], blocks: bool) -> dict[str, nn.Module]:
    found = {}
    for name, module in model.named_modules():
        rest = name.split(".", 2)[2] if blocks and name.startswith("blocks.") and name.count(".") >= 2 else name
        if rest in names and (name.startswith("blocks.") == blocks) and hasattr(module, "in_features"):
            found[name] = module
    return found


def _pair(layer: nn.Module, rank: int, generator: torch.Generator, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    down = torch.randn(rank, layer.in_features, generator=generator) * std
    up = torch.randn(layer.out_features, rank, generator=generator) * std
    return down, up


def wan_lora_state(
    model: nn.Module,
    fmt: str,
    rank: int = 4,
    seed: int = 0,
    alpha: float | None = 2.0,
    std: float = 0.2,
    top_level: bool = True,
    norm_diffs: str = "zero",
) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """(tensors, safetensors metadata) of a LoRA for `model` (our Wan DiT) in layout `fmt`.

    Every format adapts all block Linears (incl. the image branch where the model has one); "official" and
    "lightx2v" also the text / time embeddings and the time projection (`top_level`), "lightx2v" adds bias
    differences (diff_b), the head as a full weight difference (`head.head.diff`) and norm / modulation
    differences: `norm_diffs` "zero" (as the published files carry), "random" or "none".
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown LoRA format {fmt!r}; one of {FORMATS}")
    generator = torch.Generator().manual_seed(seed)
    blocks = _linears(model, BLOCK_LINEARS, blocks=True)
    tops = _linears(model, TOP_LINEARS, blocks=False) if top_level and fmt in ("official", "lightx2v") else {}
    out: dict[str, torch.Tensor] = {}
    metadata = None
    for name, layer in {**blocks, **tops}.items():
        down, up = _pair(layer, rank, generator, std)
        with_alpha = alpha is not None and name.startswith("blocks.")
        if fmt == "kohya":
            key = "lora_unet_" + name.replace(".", "_")
            out |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up}
            out[f"{key}.alpha"] = torch.tensor(alpha if alpha is not None else float(rank))
        elif fmt == "diffusers":
            key = "transformer." + to_diffusers_key(name + ".weight").removesuffix(".weight")
            out |= {f"{key}.lora_A.weight": down, f"{key}.lora_B.weight": up}
        else:
            down_name, up_name = ("lora_A", "lora_B") if fmt == "official" else ("lora_down", "lora_up")
            key = "diffusion_model." + name
            out |= {f"{key}.{down_name}.weight": down, f"{key}.{up_name}.weight": up}
            if with_alpha:
                out[f"{key}.alpha"] = torch.tensor(alpha)
            if fmt == "lightx2v" and layer.bias is not None:
                out[f"{key}.diff_b"] = torch.randn(layer.out_features, generator=generator) * std
    if fmt == "diffusers":
        metadata = _peft_metadata(blocks, rank, alpha)
    if fmt == "lightx2v":
        out |= _lightx2v_extras(model, generator, std, norm_diffs)
    return out, metadata


def _peft_metadata(blocks: dict[str, nn.Module], rank: int, alpha: float | None) -> dict[str, str]:
    targets = sorted({to_diffusers_key(n + ".weight").removesuffix(".weight").split(".", 2)[2] for n in blocks})
    config = {"r": rank, "lora_alpha": alpha if alpha is not None else rank, "target_modules": targets,
              "lora_dropout": 0.0, "bias": "none", "use_dora": False, "lora_bias": False}
    return {"lora_adapter_metadata": json.dumps({f"transformer.{k}": v for k, v in config.items()})}


def _lightx2v_extras(model: nn.Module, generator: torch.Generator, std: float, norm_diffs: str
                     ) -> dict[str, torch.Tensor]:
    """The head as a full weight + bias difference, and norm / modulation differences."""
    head = model.get_submodule("head.head")
    out = {"diffusion_model.head.head.diff": torch.randn(head.weight.shape, generator=generator) * std * 0.1,
           "diffusion_model.head.head.diff_b": torch.randn(head.out_features, generator=generator) * std}
    if norm_diffs == "none":
        return out
    for name, param in model.named_parameters():
        rest = name.split(".", 2)[2] if name.startswith("blocks.") else ""
        if rest.removesuffix(".weight") in BLOCK_NORMS and name.endswith(".weight"):
            key = f"diffusion_model.{name.removesuffix('.weight')}.diff"
        elif rest.removesuffix(".bias") in BLOCK_NORMS and name.endswith(".bias"):
            key = f"diffusion_model.{name.removesuffix('.bias')}.diff_b"
        elif rest == "modulation":
            key = f"diffusion_model.{name.removesuffix('.modulation')}.diff_m"
        else:
            continue
        value = torch.randn(param.shape, generator=generator) * std
        out[key] = torch.zeros(param.shape) if norm_diffs == "zero" else value
    return out


def write_wan_lora(path: str | Path, model: nn.Module, fmt: str, dtype: torch.dtype = torch.float32, **kwargs
                   ) -> Path:
    """Write `wan_lora_state(model, fmt, **kwargs)` to `path` in `dtype`."""
    tensors, metadata = wan_lora_state(model, fmt, **kwargs)
    return save_safetensors(Path(path), {k: v.to(dtype) for k, v in tensors.items()}, metadata)


def ltx2_lora_state(rank: int = 4, dim: int = 64, blocks: int = 2) -> dict[str, torch.Tensor]:
    """A LoRA in the layout of LTX-2's (`diffusion_model.transformer_blocks.N.attn1.to_q.lora_A.weight`)."""
    out = {}
    for i in range(blocks):
        for layer in ("attn1.to_q", "attn1.to_k", "attn2.to_v", "ff.net.0.proj"):
            key = f"diffusion_model.transformer_blocks.{i}.{layer}"
            out[f"{key}.lora_A.weight"] = torch.randn(rank, dim)
            out[f"{key}.lora_B.weight"] = torch.randn(dim, rank)
    return out
