"""CLIP ViT-H/14 vision tower for Wan2.1 I2V / FLF2V image conditioning.

Wan uses the hidden states after all blocks but the last, without the post norm or projection:
`[B, 257, 1280]` for 224x224 images (= Hugging Face `hidden_states[-2]`, ComfyUI `penultimate_hidden_states`).
Parameter names are Hugging Face `CLIPVisionModel` names, which is how ComfyUI's `clip_vision_h.safetensors`
is laid out and what ComfyUI converts open_clip files to. The last block, `post_layernorm` and
`visual_projection` in those files are never built here. `convert_clip_vision_state_dict` turns Wan's
`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` and standard open_clip `visual.*` dicts into these names.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.runtime.attention import attention
from videosdgx.runtime.errors import WrongComponentError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipVisionConfig:
    """`layers` counts the blocks stored in checkpoints; the model builds `layers - 1` of them."""

    image_size: int
    patch_size: int
    dim: int
    heads: int
    layers: int
    mlp_dim: int
    eps: float = 1e-5

    @classmethod
    def vit_h_14(cls) -> "ClipVisionConfig":
        """OpenCLIP ViT-H/14 at 224 px, the vision tower of Wan's xlm-roberta-large-vit-huge-14 CLIP."""
        return cls(image_size=224, patch_size=14, dim=1280, heads=16, layers=32, mlp_dim=5120)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the weight and input dtypes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(
            x.dtype
        )


class ClipVisionEmbeddings(nn.Module):
    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, cfg.dim, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(cfg.dim))
        self.position_embedding = nn.Embedding((cfg.image_size // cfg.patch_size) ** 2 + 1, cfg.dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class ClipAttention(nn.Module):
    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q_proj = nn.Linear(cfg.dim, cfg.dim)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim)
        self.out_proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = (self.heads, -1)
        q, k, v = (p(x).unflatten(-1, heads).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(attention(q, k, v).transpose(1, 2).flatten(2))


class ClipMlp(nn.Module):
    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        self.layer_norm1 = LayerNorm(cfg.dim, eps=cfg.eps)
        self.self_attn = ClipAttention(cfg)
        self.layer_norm2 = LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = ClipMlp(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([ClipEncoderLayer(cfg) for _ in range(cfg.layers - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ClipVisionTransformer(nn.Module):
    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        self.embeddings = ClipVisionEmbeddings(cfg)
        self.pre_layrnorm = LayerNorm(cfg.dim, eps=cfg.eps)
        self.encoder = ClipEncoder(cfg)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.pre_layrnorm(self.embeddings(pixels)))


class ClipVisionEncoder(nn.Module):
    """Penultimate hidden states of a CLIP vision tower: normalized pixels `[B, 3, S, S]` -> `[B, 1 + (S/p)^2, dim]`."""

    def __init__(self, cfg: ClipVisionConfig):
        super().__init__()
        self.cfg = cfg
        self.vision_model = ClipVisionTransformer(cfg)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixels)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images `[B, 3, H, W]` in [-1, 1] -> bicubic resize to the model size (no crop) and OpenAI CLIP
        normalisation, in float32, as Wan's `CLIPModel.visual`."""
        size = (self.cfg.image_size, self.cfg.image_size)
        x = F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False) * 0.5 + 0.5
        mean = x.new_tensor(OPENAI_CLIP_MEAN)[:, None, None]
        std = x.new_tensor(OPENAI_CLIP_STD)[:, None, None]
        return (x - mean) / std

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images `[B, 3, H, W]` in [-1, 1] -> `[B, 257, 1280]` image context for the Wan DiT."""
        weight = self.vision_model.embeddings.patch_embedding.weight
        return self(self.preprocess(images).to(weight.device, weight.dtype))


ClipVisionLayout = Literal["hf", "open_clip", "wan"]

_LAYOUTS = {
    "wan": {
        "block_prefix": "visual.transformer.",
        "qkv": ("attn.to_qkv.weight", "attn.to_qkv.bias"),
        "block": {"norm1": "layer_norm1", "attn.proj": "self_attn.out_proj", "norm2": "layer_norm2",
                  "mlp.0": "mlp.fc1", "mlp.2": "mlp.fc2"},
        "top": {"visual.patch_embedding.weight": "vision_model.embeddings.patch_embedding.weight",
                "visual.cls_embedding": "vision_model.embeddings.class_embedding",
                "visual.pos_embedding": "vision_model.embeddings.position_embedding.weight",
                "visual.pre_norm.weight": "vision_model.pre_layrnorm.weight",
                "visual.pre_norm.bias": "vision_model.pre_layrnorm.bias",
                "visual.post_norm.weight": "vision_model.post_layernorm.weight",
                "visual.post_norm.bias": "vision_model.post_layernorm.bias",
                "visual.head": "visual_projection.weight"},
    },
    "open_clip": {
        "block_prefix": "visual.transformer.resblocks.",
        "qkv": ("attn.in_proj_weight", "attn.in_proj_bias"),
        "block": {"ln_1": "layer_norm1", "attn.out_proj": "self_attn.out_proj", "ln_2": "layer_norm2",
                  "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"},
        "top": {"visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
                "visual.class_embedding": "vision_model.embeddings.class_embedding",
                "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
                "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
                "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
                "visual.ln_post.weight": "vision_model.post_layernorm.weight",
                "visual.ln_post.bias": "vision_model.post_layernorm.bias",
                "visual.proj": "visual_projection.weight"},
    },
}


def detect_clip_vision_layout(keys: Iterable[str]) -> ClipVisionLayout:
    """Tell the Hugging Face / ComfyUI, open_clip and Wan `.pth` layouts apart, or refuse a non-CLIP file."""
    keys = set(keys)
    if "vision_model.embeddings.patch_embedding.weight" in keys:
        return "hf"
    if "visual.transformer.resblocks.0.attn.in_proj_weight" in keys:
        return "open_clip"
    if "visual.transformer.0.attn.to_qkv.weight" in keys:
        return "wan"
    raise WrongComponentError(
        "This file is not a CLIP vision model. Wan2.1 image-to-video needs clip_vision_h.safetensors "
        "(or Wan's models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth) in the CLIP vision loader."
    )


def _convert_top(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if name.endswith("class_embedding"):
        return tensor.reshape(-1)
    if name.endswith("position_embedding.weight"):
        return tensor.reshape(-1, tensor.shape[-1])
    if name == "visual_projection.weight":
        return tensor.t().contiguous()
    return tensor


def _block_tensors(spec: dict, layout: str, index: str, rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    prefix = f"vision_model.encoder.layers.{index}."
    if rest in spec["qkv"]:
        param = "weight" if rest == spec["qkv"][0] else "bias"
        parts = zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0))
        return {f"{prefix}self_attn.{part}.{param}": chunk.contiguous() for part, chunk in parts}
    module, _, param = rest.rpartition(".")
    if module not in spec["block"]:
        raise WrongComponentError(
            f"Unexpected tensor '{spec['block_prefix']}{index}.{rest}' in a {layout}-layout CLIP vision file."
        )
    return {f"{prefix}{spec['block'][module]}.{param}": tensor}


def convert_clip_vision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Vision-tower tensors of any supported layout under Hugging Face names (text tower and logit scale dropped)."""
    layout = detect_clip_vision_layout(state_dict)
    if layout == "hf":
        return {k: v for k, v in state_dict.items() if k.startswith(("vision_model.", "visual_projection."))}
    spec = _LAYOUTS[layout]
    block_key = re.compile("^" + re.escape(spec["block_prefix"]) + r"(\d+)\.(.+)$")
    out = {}
    for key, tensor in state_dict.items():
        if key in spec["top"]:
            out[spec["top"][key]] = _convert_top(spec["top"][key], tensor)
        elif key.startswith("visual."):
            match = block_key.match(key)
            if match is None:
                raise WrongComponentError(f"Unexpected tensor '{key}' in a {layout}-layout CLIP vision file.")
            out.update(_block_tensors(spec, layout, *match.groups(), tensor))
    return out
