"""Loading Wan components from any published layout: DiT, VAE, UMT5 text encoder (+ tokenizer), CLIP vision."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.runtime.errors import CheckpointError
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file
from videosdgx.text.t5 import T5Encoder, config_from_shapes as t5_config_from_shapes
from videosdgx.text.t5_keys import SPIECE_MODEL_KEY, t5_key_map
from videosdgx.text.tokenizer import T5Tokenizer, load_tokenizer
from videosdgx.wan.clip_vision import ClipVisionConfig, ClipVisionEncoder, convert_clip_vision_state_dict
from videosdgx.wan.keys import detect_dit_layout, to_official_key
from videosdgx.wan.transformer import WanModel, config_from_shapes, heads_from_metadata
from videosdgx.wan.vae import build_vae, vae_config_from_shapes
from videosdgx.wan.vae_keys import diffusers_to_official, is_diffusers_vae

PathLike = str | os.PathLike
DIT_LOADER = "the Wan Model Loader"
VAE_LOADER = "the Wan VAE Loader"
TEXT_LOADER = "the Wan Text Encoder Loader"
CLIP_LOADER = "the Wan CLIP Vision Loader"
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
CLIP_HEAD_DIM = 80  # ViT-H/14: 1280 wide, 16 heads


def load_dit(path: PathLike | list, request: LoadRequest) -> LoadedModel:
    """A Wan DiT (any variant) from the official, ComfyUI (incl. fp8 / fp8-scaled) or diffusers layout."""

    def key_map(checkpoint: Checkpoint):
        layout = detect_dit_layout(checkpoint.keys())
        return lambda key: to_official_key(key, layout)

    return load_model_file(
        path, family="wan", component="transformer", loader=DIT_LOADER, request=request, key_map=key_map,
        build=lambda shapes, checkpoint: WanModel(config_from_shapes(shapes, heads_from_metadata(checkpoint.metadata))),
    )


def load_vae(path: PathLike, request: LoadRequest) -> LoadedModel:
    """A Wan 2.1 (z16) or 2.2 (z48) VAE from the official/ComfyUI or diffusers layout."""

    def build(shapes, _):
        return build_vae(vae_config_from_shapes(shapes))

    return load_model_file(path, family="wan", component="VAE", loader=VAE_LOADER, request=request,
                           key_map=_vae_key_map, build=build)


def _vae_key_map(checkpoint: Checkpoint):
    if not is_diffusers_vae(checkpoint.keys()):
        return None
    renamed = diffusers_to_official({key: key for key in checkpoint.keys()})
    official_of = {original: official for official, original in renamed.items()}
    return official_of.get


@dataclass
class WanTextEncoder:
    """UMT5 encoder + its tokenizer: prompts -> per-prompt `[tokens, 4096]` contexts."""

    encoder: T5Encoder
    tokenizer: T5Tokenizer
    source: str


def load_text_encoder(path: PathLike, request: LoadRequest, tokenizer: PathLike | None = None) -> WanTextEncoder:
    """The UMT5-XXL encoder (HF/ComfyUI or Wan `.pth` layout) and its tokenizer.

    The tokenizer comes from `tokenizer` (a tokenizer.json, spiece.model or folder) when given, else from the
    `spiece_model` tensor that ComfyUI's umt5 files embed, else from a tokenizer folder next to the file
    (`google/umt5-xxl/` as in the official Wan repos, or `tokenizer/`).
    """
    spiece: list[torch.Tensor] = []

    def key_map(checkpoint: Checkpoint):
        if SPIECE_MODEL_KEY in checkpoint:
            spiece.append(checkpoint.get(SPIECE_MODEL_KEY).clone())
        mapping = t5_key_map(checkpoint.keys())
        return mapping.get

    def build(shapes, _):
        return T5Encoder(t5_config_from_shapes(shapes))

    loaded = load_model_file(path, family="text", component="text encoder", loader=TEXT_LOADER, request=request,
                             key_map=key_map, build=build)
    source = tokenizer or (spiece[0] if spiece else _tokenizer_next_to(Path(path)))
    return WanTextEncoder(loaded.module, load_tokenizer(source), loaded.source)


def _tokenizer_next_to(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / "google" / "umt5-xxl", folder / "tokenizer", folder / "umt5-xxl", folder):
        if any((candidate / name).is_file() for name in TOKENIZER_FILES):
            return candidate
    raise CheckpointError(
        f"No tokenizer found for {path.name}: it has no embedded `spiece_model` and there is no tokenizer.json or "
        f"spiece.model in {folder}/google/umt5-xxl, {folder}/tokenizer or {folder}. Install the tokenizer files "
        "listed in model_manifest.yaml (entry umt5-xxl-tokenizer) or use the Comfy-Org umt5_xxl file."
    )


def load_clip_vision(path: PathLike, request: LoadRequest) -> LoadedModel:
    """The CLIP ViT-H/14 vision tower (HF/ComfyUI, open_clip or Wan `.pth` layout) for Wan2.1 I2V / FLF2V."""

    def convert(checkpoint: Checkpoint) -> Checkpoint:
        vision = {k: checkpoint.get(k) for k in checkpoint.keys() if k.startswith(("visual", "vision_model."))}
        return Checkpoint.from_tensors(_penultimate_tower(convert_clip_vision_state_dict(vision)), checkpoint.files[0])

    return load_model_file(path, family="wan", component="CLIP vision", loader=CLIP_LOADER, request=request,
                           key_map=lambda checkpoint: None, convert=convert,
                           build=lambda shapes, _: ClipVisionEncoder(_clip_config(shapes)))


def _penultimate_tower(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan uses the tower's penultimate hidden states: drop the last block, the post norm and the projection."""
    last = max(int(k.split(".")[3]) for k in state if k.startswith("vision_model.encoder.layers."))
    unused = (f"vision_model.encoder.layers.{last}.", "vision_model.post_layernorm.", "visual_projection.")
    return {k: v for k, v in state.items() if not k.startswith(unused)}


def _clip_config(shapes: dict[str, tuple[int, ...]]) -> ClipVisionConfig:
    dim, _, patch, _ = shapes["vision_model.embeddings.patch_embedding.weight"]
    positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
    layers = len({k.split(".")[3] for k in shapes if k.startswith("vision_model.encoder.layers.")}) + 1
    side = int(round((positions - 1) ** 0.5))
    return ClipVisionConfig(image_size=side * patch, patch_size=patch, dim=dim, heads=max(1, dim // CLIP_HEAD_DIM),
                            layers=layers, mlp_dim=shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0])
