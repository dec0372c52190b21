"""The Wan 2.1 / 2.2 diffusion transformer (DiT); parameter names equal the official checkpoint keys."""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.layers.embeddings import timestep_embedding
from videosdgx.layers.rope import RopeFreqs, rope_frequencies
from videosdgx.runtime.errors import CheckpointError, ConfigurationError, WrongComponentError
from videosdgx.runtime.quantized_linear import compute_dtype
from videosdgx.wan.transformer_blocks import Head, ImageEmbedding, WanBlock, fp32_linear

MODEL_TYPES = ("t2v", "i2v", "flf2v", "ti2v")
FLF2V_IMAGE_TOKENS = 2 * 257

UNSUPPORTED_VARIANTS = {
    "vace_patch_embedding": "Wan VACE",
    "vace_blocks": "Wan VACE",
    "control_adapter": "Wan Fun camera-control",
    "casual_audio_encoder": "Wan S2V (speech-to-video)",
    "face_adapter": "Wan Animate",
    "motion_encoder": "Wan Animate",
    "pose_patch_embedding": "Wan Animate",
    "audio_proj": "audio-driven Wan (SkyReels V3 talking avatar or HuMo)",
}
RELEASED_HEAD_DIM = 128  # every released Wan DiT; a file may state otherwise in its metadata


@dataclass(frozen=True)
class WanConfig:
    """Architecture of one Wan DiT. `has_image_branch`: CLIP image cross-attention (Wan2.1 I2V / FLF2V only)."""

    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int
    out_dim: int
    model_type: str = "t2v"
    has_image_branch: bool = False
    text_dim: int = 4096
    freq_dim: int = 256
    text_len: int = 512
    image_dim: int = 1280
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = (1, 2, 2)
    rope_max_positions: int = 1024
    rope_theta: float = 10000.0
    rope_fp32: bool = False  # angles in float32, as SkyReels V3 V2V builds its table (Wan: float64)
    context_rope_start: int = 1024  # temporal RoPE index of the first appended context frame (SkyReels V3)

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ConfigurationError(f"Unknown Wan model_type {self.model_type!r}; expected one of {MODEL_TYPES}.")
        image_branch = {"t2v": False, "ti2v": False, "flf2v": True}.get(self.model_type, self.has_image_branch)
        if self.has_image_branch != image_branch:
            raise ConfigurationError(f"Wan {self.model_type} has_image_branch must be {image_branch}.")
        if self.dim % self.num_heads or self.head_dim % 2:
            raise ConfigurationError(f"Wan dim {self.dim} must split into {self.num_heads} heads of even size.")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_axes_dims(self) -> tuple[int, int, int]:
        """RoPE band sizes (time, height, width) within one head."""
        spatial = 2 * (self.head_dim // 6)
        return self.head_dim - 2 * spatial, spatial, spatial


_WAN_14B = dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)

WAN_PRESETS: dict[str, WanConfig] = {
    "wan2.1-t2v-1.3b": WanConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, in_dim=16, out_dim=16),
    "wan2.1-t2v-14b": WanConfig(**_WAN_14B, in_dim=16, out_dim=16),
    "wan2.1-i2v-14b": WanConfig(**_WAN_14B, in_dim=36, out_dim=16, model_type="i2v", has_image_branch=True),
    "wan2.1-flf2v-14b": WanConfig(**_WAN_14B, in_dim=36, out_dim=16, model_type="flf2v", has_image_branch=True),
    "wan2.2-t2v-a14b": WanConfig(**_WAN_14B, in_dim=16, out_dim=16),
    "wan2.2-i2v-a14b": WanConfig(**_WAN_14B, in_dim=36, out_dim=16, model_type="i2v"),
    "wan2.2-ti2v-5b": WanConfig(
        dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48, model_type="ti2v"
    ),
}


def matching_presets(cfg: WanConfig) -> list[str]:
    """Names of the released variants with this architecture (Wan2.1 T2V-14B and each Wan2.2 A14B expert of
    the same task are indistinguishable by their weights)."""
    return [name for name, preset in WAN_PRESETS.items() if preset == cfg]


def heads_from_metadata(metadata: Mapping[str, str] | None) -> int | None:
    """The head count a file states in its `config` metadata (official `num_heads`, diffusers
    `num_attention_heads`), or None."""
    try:
        config = json.loads((metadata or {}).get("config", "{}"))
    except ValueError:
        return None
    heads = config.get("num_heads", config.get("num_attention_heads")) if isinstance(config, dict) else None
    return heads if isinstance(heads, int) and heads > 0 else None


def config_from_shapes(shapes: Mapping[str, Sequence[int]], num_heads: int | None = None) -> WanConfig:
    """Infer the architecture from official key names and tensor shapes.

    The weights do not show the head count: `num_heads` comes from the file's metadata when it states it, else
    heads are 128 wide as in every release; only a width that no head count can split is refused.

    Raises WrongComponentError for Wan variants VideosDGX does not run (VACE, Fun camera, S2V, Animate, HuMo) and
    for files that are not a Wan DiT.
    """
    for key in shapes:
        variant = UNSUPPORTED_VARIANTS.get(key.split(".", 1)[0])
        if variant:
            raise WrongComponentError(
                f"This is a {variant} model; VideosDGX does not support it yet. "
                "Choose a Wan 2.1/2.2 T2V, I2V, FLF2V or TI2V-5B diffusion model."
            )
    required = ("patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
                "blocks.0.ffn.0.weight", "head.head.weight", "head.modulation")
    missing = [key for key in required if key not in shapes]
    if missing:
        raise WrongComponentError(
            f"This file is not a Wan diffusion model (it has no {missing[0]!r}). "
            "Choose a Wan 2.1/2.2 file from the diffusion_models folder."
        )
    dim = shapes["head.modulation"][-1]
    if num_heads is None:
        if dim % RELEASED_HEAD_DIM:
            raise CheckpointError(
                f"This Wan DiT is {dim} wide, which is not a whole number of the released 128-wide heads, and the "
                "file does not state its head count (no num_heads in its `config` metadata). Add the metadata or "
                "use a released model file."
            )
        num_heads = dim // RELEASED_HEAD_DIM
    if dim % num_heads or (dim // num_heads) % 2:
        raise CheckpointError(f"Wan DiT width {dim} cannot split into {num_heads} heads of even size; damaged file?")
    in_dim = shapes["patch_embedding.weight"][1]
    patch_size = tuple(shapes["patch_embedding.weight"][2:])
    out_dim = shapes["head.head.weight"][0] // math.prod(patch_size)
    has_image_branch = "img_emb.proj.0.weight" in shapes
    if "img_emb.emb_pos" in shapes:
        model_type = "flf2v"
    elif has_image_branch or in_dim == 36:
        model_type = "i2v"
    elif out_dim == 48:
        model_type = "ti2v"
    else:
        model_type = "t2v"
    return WanConfig(
        dim=dim,
        ffn_dim=shapes["blocks.0.ffn.0.weight"][0],
        num_heads=num_heads,
        num_layers=1 + max(int(key.split(".")[1]) for key in shapes if key.startswith("blocks.")),
        in_dim=in_dim,
        out_dim=out_dim,
        model_type=model_type,
        has_image_branch=has_image_branch,
        text_dim=shapes["text_embedding.0.weight"][1],
        freq_dim=shapes["time_embedding.0.weight"][1],
        image_dim=shapes["img_emb.proj.0.weight"][0] if has_image_branch else 1280,
        patch_size=patch_size,
    )


class WanModel(nn.Module):
    """Wan DiT: predicts the flow velocity (noise - x0) of a video latent.

    Computes the time embedding, modulation, norms, RoPE, head and residual stream in float32 as the reference
    does; every other layer runs in its weights' dtype.
    """

    def __init__(self, cfg: WanConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(self.make_block() for _ in range(cfg.num_layers))
        self.head = Head(dim, cfg.out_dim * math.prod(cfg.patch_size), cfg.eps)
        if cfg.has_image_branch:
            position_tokens = FLF2V_IMAGE_TOKENS if cfg.model_type == "flf2v" else None
            self.img_emb = ImageEmbedding(cfg.image_dim, dim, position_tokens)

    def make_block(self) -> WanBlock:
        cfg = self.cfg
        return WanBlock(cfg.dim, cfg.ffn_dim, cfg.num_heads, cfg.eps, cfg.has_image_branch)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        clip_fea: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        context_latents: Sequence[torch.Tensor] = (),
        **block_inputs: torch.Tensor,
    ) -> torch.Tensor:
        """Velocity `[B, C_out, T, h, w]` (float32) of the latent `x [B, C, T, h, w]`.

        `t`: timesteps in [0, 1000], `[B]`, per latent frame `[B, frames]` (SkyReels V3 V2V; frames counts the
        appended context frames too) or per token `[B, T * h/2 * w/2]` (Wan2.2). `context`: text encoder states
        `[B, L <= text_len, text_dim]`, zero-padded to `text_len` here. `y`: conditioning channels concatenated
        to `x` (I2V / FLF2V). `clip_fea`: CLIP tokens `[B, 257, image_dim]` for Wan2.1 I2V, the two images'
        tokens `[B, 514, image_dim]` or `[2B, 257, image_dim]` for FLF2V. `context_latents`: clean latents
        `[B, C, T_k, h, w]` whose tokens are appended after those of `x` (SkyReels V3 shot switching), with
        temporal RoPE positions from `context_rope_start` on; their outputs are dropped. `block_inputs` go to
        every block (extensions such as the SkyReels V3 avatar's audio tokens).
        """
        cfg = self.cfg
        batch = x.shape[0]
        if y is not None:
            x = torch.cat([x, y], dim=1)
        x, grid = self.embed_patches(x)
        appended = [self.embed_patches(latent) for latent in context_latents]
        freqs = self.rope(grid, [g for _, g in appended], x.device)
        num_tokens = x.shape[1]
        x = torch.cat([x] + [tokens for tokens, _ in appended], dim=1)

        e, e0 = self.embed_time(t, num_tokens=x.shape[1])
        context = self.embed_text(context)
        context_img = self.embed_image(clip_fea, batch)

        for block in self.blocks:
            x = block(x, e0, context, context_img, freqs, **block_inputs)

        x = self.head(x, e)[:, :num_tokens]
        f, h, w = grid
        pt, ph, pw = cfg.patch_size
        return rearrange(
            x, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ph, pw=pw
        )

    def embed_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Latent `[B, in_dim, T, H, W]` -> float32 tokens `[B, N, D]` and their grid `(f, h, w)`."""
        cfg = self.cfg
        if x.shape[1] != cfg.in_dim:
            raise ConfigurationError(f"This Wan model takes {cfg.in_dim} input channels (x + y), got {x.shape[1]}.")
        x = self.patch_embedding(x.to(self.patch_embedding.weight.dtype))
        return rearrange(x, "b d f h w -> b (f h w) d").float(), tuple(x.shape[2:])

    def rope(self, grid: tuple[int, int, int], appended: list[tuple[int, int, int]], device) -> RopeFreqs:
        """RoPE tables of the tokens of `grid`, then of each appended grid (time from `context_rope_start`)."""
        cfg = self.cfg
        precision = torch.float32 if cfg.rope_fp32 else torch.float64
        start = cfg.context_rope_start
        needed = max(grid)
        if appended:
            needed = max(needed, start + sum(g[0] for g in appended), *(max(g[1:]) for g in appended))
        if needed > cfg.rope_max_positions:
            raise ConfigurationError(
                f"Latent grid {grid} needs more than the {cfg.rope_max_positions} RoPE positions of this model."
            )
        if not appended:
            return rope_frequencies(cfg.rope_axes_dims, grid, cfg.rope_theta, device, precision)
        if grid[0] > start:
            raise ConfigurationError(f"At most {start} latent frames can precede the appended context, got {grid[0]}.")
        positions, offset = [_grid_positions(grid, 0)], start
        for sizes in appended:
            positions.append(_grid_positions(sizes, offset))
            offset += sizes[0]
        return rope_frequencies(cfg.rope_axes_dims, torch.cat(positions).to(device), cfg.rope_theta, device, precision)

    def embed_time(self, t: torch.Tensor, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 time embedding `e [B, G, D]` and its 6-way projection `e0 [B, G, 6, D]`, for G groups of
        consecutive tokens sharing a timestep: 1 (scalar t), one per latent frame, or one per token."""
        if t.ndim == 1:
            t = t[:, None]
        elif t.ndim != 2 or num_tokens % t.shape[1]:
            raise ConfigurationError(
                f"Timesteps must be [batch], [batch, frames] or [batch, {num_tokens}], got {list(t.shape)}."
            )
        first, act, second = self.time_embedding
        e = fp32_linear(second, act(fp32_linear(first, timestep_embedding(t, self.cfg.freq_dim))))
        e0 = fp32_linear(self.time_projection[1], F.silu(e))
        return e, e0.unflatten(-1, (6, self.cfg.dim))

    def embed_text(self, context: torch.Tensor) -> torch.Tensor:
        """Zero-pad to `text_len` tokens (the padded rows are attended to, as in the reference) and project."""
        padding = self.cfg.text_len - context.shape[1]
        if padding < 0:
            raise ConfigurationError(f"Wan takes at most {self.cfg.text_len} text tokens, got {context.shape[1]}.")
        dtype = compute_dtype(self.text_embedding[0])
        return self.text_embedding(F.pad(context.to(dtype), (0, 0, 0, padding)))

    def embed_image(self, clip_fea: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """CLIP features -> image context tokens, or None for models without the image branch."""
        if not self.cfg.has_image_branch:
            if clip_fea is not None:
                raise ConfigurationError("This Wan model has no CLIP image branch; do not pass clip_fea.")
            return None
        if clip_fea is None:
            raise ConfigurationError(f"Wan2.1 {self.cfg.model_type.upper()} needs CLIP image features (clip_fea).")
        clip_fea = clip_fea.reshape(batch, -1, clip_fea.shape[-1])
        if self.cfg.model_type == "flf2v" and clip_fea.shape[1] != FLF2V_IMAGE_TOKENS:
            raise ConfigurationError(
                f"Wan FLF2V takes {FLF2V_IMAGE_TOKENS} CLIP tokens (first + last image), got {clip_fea.shape[1]}."
            )
        return self.img_emb(clip_fea)


def _grid_positions(grid: tuple[int, int, int], time_start: int) -> torch.Tensor:
    """`[f * h * w, 3]` integer (time, row, column) positions of a token grid in row-major order."""
    f, h, w = grid
    axes = torch.meshgrid(torch.arange(time_start, time_start + f), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack(axes, dim=-1).reshape(-1, 3)
