"""Loading MAGI-1 components from the official files: the sharded DiT by its index, the VAE (config.json +
safetensors), the T5 v1.1 XXL encoder (DeepFloyd layout: `.bin` shards + index) and its tokenizer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from videosdgx.magi1.caption import clean_caption
from videosdgx.magi1.config import DIT_CONFIGS, config_from_shapes
from videosdgx.magi1.transformer import MagiDiT
from videosdgx.magi1.vae import MagiVAE, MagiVAEConfig, config_from_shapes as vae_config_from_shapes
from videosdgx.runtime.model_files import LoadRequest, load_model_file
from videosdgx.text.t5 import T5Encoder, config_from_shapes as t5_config_from_shapes
from videosdgx.text.t5_keys import t5_key_map
from videosdgx.text.tokenizer import T5Tokenizer, load_tokenizer

PathLike = str | os.PathLike
LOADER = "the MAGI-1 pipeline (videosdgx generate --model magi-1-4.5b-distill)"
CAPTION_LENGTH = 800  # the reference tokenizes to 800 tokens whatever the model


def load_dit(path: PathLike | list, request: LoadRequest, size: str | None = None) -> MagiDiT:
    """The DiT from its shard index (or shards); architecture from the variant table's `size` plus the shapes."""
    x_rescale = DIT_CONFIGS[size].x_rescale if size else None
    return load_model_file(path, family="magi1", component="transformer", loader=LOADER, request=request,
                           key_map=lambda checkpoint: None,
                           build=lambda shapes, _: MagiDiT(config_from_shapes(shapes, x_rescale))).module


def load_vae(path: PathLike, config: PathLike | None, request: LoadRequest) -> MagiVAE:
    """The VAE; heads, training size and length come from `config.json` (next to the weights if not given)."""
    config = Path(config) if config else Path(path).parent / "config.json"
    base = MagiVAEConfig.from_json(config) if config.is_file() else MagiVAEConfig()
    return load_model_file(path, family="magi1", component="VAE", loader=LOADER, request=request,
                           key_map=lambda checkpoint: None,
                           build=lambda shapes, _: MagiVAE(vae_config_from_shapes(shapes, base))).module


@dataclass
class MagiTextEncoder:
    """T5 v1.1 XXL + tokenizer: prompts -> (`[800, 4096]` embedding, `[800]` mask), cleaned as the reference."""

    encoder: T5Encoder
    tokenizer: T5Tokenizer

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ids, mask = self.tokenizer.encode([clean_caption(p) for p in prompts], max_length=CAPTION_LENGTH)
        device = self.encoder.shared.weight.device
        out = self.encoder(ids.to(device), mask.to(device)).float()
        return [(out[i], mask[i].to(device)) for i in range(len(prompts))]


def load_text_encoder(path: PathLike | list, tokenizer: PathLike, request: LoadRequest) -> MagiTextEncoder:
    """T5 from its `pytorch_model.bin.index.json` (or shards / a safetensors file) and `spiece.model`."""
    encoder = load_model_file(path, family="text", component="text encoder", loader=LOADER, request=request,
                              key_map=lambda checkpoint: t5_key_map(checkpoint.keys()).get,
                              build=lambda shapes, _: T5Encoder(t5_config_from_shapes(shapes))).module
    return MagiTextEncoder(encoder, load_tokenizer(tokenizer))
