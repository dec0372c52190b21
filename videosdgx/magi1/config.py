"""MAGI-1 DiT architecture: the released sizes (magi1.md §1) and the configuration read from a file's shapes.

The official checkpoints carry no config file: the architecture comes from this table plus the tensors' shapes,
never from a `model_type`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from videosdgx.runtime.errors import CheckpointError

LATENT_CHANNELS = 16
INTERLEAVE_GROUPS = 8  # the fixed 8-way interleave before linear_proj (a tensor-parallel training artefact)


@dataclass(frozen=True)
class MagiDiTConfig:
    layers: int
    dim: int
    ffn_dim: int
    heads: int
    kv_heads: int = 8
    head_dim: int = 128
    in_channels: int = 16
    out_channels: int = 16
    gated_mlp: bool = False  # SwiGLU (24B) instead of GELU (4.5B)
    x_rescale: float = 1.0
    caption_dim: int = 4096
    caption_length: int = 800
    cond_dim: int = 768  # dim * cond_hidden_ratio (0.25)
    patch: int = 2
    t_patch: int = 1
    eps: float = 1e-6
    fp8_layers: tuple[int, ...] = ()  # layers whose big Linears are stored in fp8 (the fp8 distill release)

    @property
    def half_channel_vae(self) -> bool:
        """The 24B DiT takes the 16-channel latent twice (32 input channels) and keeps the first 16 outputs."""
        return self.in_channels == 2 * LATENT_CHANNELS

    @property
    def rope_bands(self) -> int:
        return self.head_dim // 8


DIT_CONFIGS: dict[str, MagiDiTConfig] = {
    "4.5B": MagiDiTConfig(layers=34, dim=3072, ffn_dim=12288, heads=24, cond_dim=768),
    "24B": MagiDiTConfig(layers=48, dim=6144, ffn_dim=16384, heads=48, in_channels=32, out_channels=32,
                         gated_mlp=True, x_rescale=0.1, cond_dim=1536),
}
X_RESCALE_BY_DIM = {3072: 1.0, 6144: 0.1}


def config_from_shapes(shapes: Mapping[str, Sequence[int]], x_rescale: float | None = None) -> MagiDiTConfig:
    """The architecture of an official-layout DiT state dict; `x_rescale` from the variant table (by width if None)."""
    try:
        dim, in_channels = shapes["x_embedder.weight"][:2]
        _, patch_t, patch = shapes["x_embedder.weight"][1:4]
        head_dim = shapes["videodit_blocks.layers.0.self_attention.q_layernorm.weight"][0]
        q_dim = shapes["videodit_blocks.layers.0.self_attention.linear_qkv.q.weight"][-2]
        kv_dim = shapes["videodit_blocks.layers.0.self_attention.linear_qkv.k.weight"][-2]
        fc1 = shapes["videodit_blocks.layers.0.mlp.linear_fc1.weight"][-2]
        ffn = shapes["videodit_blocks.layers.0.mlp.linear_fc2.weight"][-1]
        caption_length, caption_dim = shapes["y_embedder.null_caption_embedding"]
        cond_dim = shapes["t_embedder.mlp.0.weight"][0]
        out_features = shapes["final_linear.linear.weight"][0]
    except KeyError as exc:
        raise CheckpointError(f"Not a MAGI-1 DiT state dict: {exc.args[0]} is missing.") from None
    layers = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("videodit_blocks.layers."))
    fp8 = tuple(sorted({int(k.split(".")[2]) for k in shapes
                        if k.startswith("videodit_blocks.layers.") and k.endswith(".weight_scale")}))
    if x_rescale is None:
        x_rescale = X_RESCALE_BY_DIM.get(dim, 1.0)
    return MagiDiTConfig(
        layers=layers, dim=dim, ffn_dim=ffn, heads=q_dim // head_dim, kv_heads=kv_dim // head_dim, head_dim=head_dim,
        in_channels=in_channels, out_channels=out_features // (patch * patch * patch_t), gated_mlp=fc1 == 2 * ffn,
        x_rescale=x_rescale, caption_dim=caption_dim, caption_length=caption_length, cond_dim=cond_dim,
        patch=patch, t_patch=patch_t, fp8_layers=fp8,
    )
