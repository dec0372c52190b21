"""The A2V-19B talking-avatar DiT: Wan2.1 I2V-14B plus an audio projector and, in every block, cross-attention of
each latent frame's tokens over that frame's audio tokens (skyreels_v3.md §4; single speaker)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from videosdgx.runtime.attention import attention
from videosdgx.runtime.errors import CheckpointError, ConfigurationError
from videosdgx.runtime.quantized_linear import compute_dtype
from videosdgx.wan.transformer import WanConfig, WanModel, config_from_shapes
from videosdgx.wan.transformer_blocks import LayerNormFP32, WanBlock

AUDIO_KEYS = ("audio_proj.", ".audio_cross_attn.", ".norm_x.")


@dataclass(frozen=True)
class AvatarConfig:
    """The Wan I2V backbone and the audio layers. wav2vec2 gives `audio_blocks` hidden states of `audio_channels`
    per video frame; each frame sees a window of `audio_window` frames; `vae_scale` video frames make one latent
    frame (after the first); each latent frame gets `context_tokens` audio tokens of width `audio_dim`."""

    wan: WanConfig
    audio_window: int = 5
    vae_scale: int = 4
    audio_blocks: int = 12
    audio_channels: int = 768
    intermediate_dim: int = 512
    audio_dim: int = 768
    context_tokens: int = 32
    norm_input_visual: bool = True
    norm_output_audio: bool = True

    @property
    def window_vf(self) -> int:
        """Window rows of a later latent frame: its first frame's left half, the middles, its last's right half."""
        return self.audio_window + self.vae_scale - 1


def avatar_config_from_shapes(shapes: Mapping[str, Sequence[int]], num_heads: int | None = None,
                              audio_window: int = 5, audio_blocks: int = 12) -> AvatarConfig:
    """The architecture from official key names and shapes (`num_heads` as for Wan: from the file's metadata, else
    128-wide heads); the window (5) and the wav2vec2 depth (12) are the release's settings (the projector's input
    width is their product with the channels)."""
    try:
        proj1, proj1_vf = shapes["audio_proj.proj1.weight"], shapes["audio_proj.proj1_vf.weight"]
        proj3, kv = shapes["audio_proj.proj3.weight"], shapes["blocks.0.audio_cross_attn.kv_linear.weight"]
    except KeyError as missing:
        raise CheckpointError(f"This is not a SkyReels V3 A2V DiT (no {missing}).") from None
    wan = config_from_shapes({k: v for k, v in shapes.items() if not k.startswith(AUDIO_KEYS[0])
                              and AUDIO_KEYS[1] not in k and AUDIO_KEYS[2] not in k}, num_heads)
    if wan.model_type != "i2v":
        raise CheckpointError(f"A SkyReels V3 A2V DiT is Wan I2V-shaped; this one is {wan.model_type}.")
    channels = proj1[1] // (audio_window * audio_blocks)
    return AvatarConfig(
        wan=wan, audio_window=audio_window, vae_scale=proj1_vf[1] // (audio_blocks * channels) - audio_window + 1,
        audio_blocks=audio_blocks, audio_channels=channels, intermediate_dim=proj1[0], audio_dim=kv[1],
        context_tokens=proj3[0] // kv[1], norm_input_visual="blocks.0.norm_x.weight" in shapes,
        norm_output_audio="audio_proj.norm.weight" in shapes,
    )


class AudioProjection(nn.Module):
    """wav2vec2 windows `[B, T_video, window, blocks, channels]` -> audio tokens `[B, T_latent, tokens, dim]`."""

    def __init__(self, cfg: AvatarConfig):
        super().__init__()
        self.cfg = cfg
        per_row = cfg.audio_blocks * cfg.audio_channels
        self.proj1 = nn.Linear(cfg.audio_window * per_row, cfg.intermediate_dim)
        self.proj1_vf = nn.Linear(cfg.window_vf * per_row, cfg.intermediate_dim)
        self.proj2 = nn.Linear(cfg.intermediate_dim, cfg.intermediate_dim)
        self.proj3 = nn.Linear(cfg.intermediate_dim, cfg.context_tokens * cfg.audio_dim)
        if cfg.norm_output_audio:
            self.norm = LayerNormFP32(cfg.audio_dim, eps=1e-5)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # two calls, so that the split windows (the largest tensor here) are freed before the output is made
        return self.project(self.embed_windows(*self.split(audio)))

    def split(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first video frame's window `[B, 1, window, s, c]`, and per later latent frame (4 video frames) the
        first frame's left half-window, the middle frames' centres and the last frame's right half-window
        `[B, T_latent - 1, window + 3, s, c]`."""
        cfg = self.cfg
        if audio.ndim != 5 or (audio.shape[1] - 1) % cfg.vae_scale or audio.shape[2] != cfg.audio_window:
            raise ConfigurationError(
                f"Audio windows must be [batch, 4k+1 frames, {cfg.audio_window}, blocks, channels], "
                f"got {list(audio.shape)}."
            )
        audio = audio.to(compute_dtype(self.proj1))
        middle = cfg.audio_window // 2
        groups = rearrange(audio[:, 1:], "b (t n) w s c -> b t n w s c", n=cfg.vae_scale)
        later = torch.cat([groups[:, :, 0, : middle + 1], groups[:, :, 1:-1, middle], groups[:, :, -1, middle:]], dim=2)
        return audio[:, :1], later

    def embed_windows(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """Split windows -> one embedding per latent frame `[B, T_latent, intermediate_dim]`."""
        first = torch.relu(self.proj1(first.flatten(2)))
        later = torch.relu(self.proj1_vf(later.flatten(2)))
        return torch.cat([first, later], dim=1)

    def project(self, embedded: torch.Tensor) -> torch.Tensor:
        """Window embeddings -> audio tokens `[B, T_latent, tokens, dim]`."""
        cfg = self.cfg
        hidden = torch.relu(self.proj2(embedded))
        tokens = self.proj3(hidden).unflatten(-1, (cfg.context_tokens, cfg.audio_dim))
        return self.norm(tokens).to(tokens.dtype) if cfg.norm_output_audio else tokens


class AudioCrossAttention(nn.Module):
    """Each latent frame's video tokens attend to that frame's audio tokens (no RoPE, no q/k norm)."""

    def __init__(self, dim: int, audio_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """`x [B, F * S, D]`, `audio [B, F, M, audio_dim]` -> `[B, F * S, D]`."""
        frames = audio.shape[1]
        x = rearrange(x.to(compute_dtype(self.q_linear)), "b (f s) d -> (b f) s d", f=frames)
        q = rearrange(self.q_linear(x), "n s (h d) -> n h s d", h=self.num_heads)
        k, v = rearrange(self.kv_linear(audio.flatten(0, 1).to(x.dtype)), "n m (two h d) -> two n h m d", two=2,
                         h=self.num_heads)
        out = rearrange(attention(q, k, v), "(b f) h s d -> b (f s) (h d)", f=frames)
        return self.proj(out)


class AvatarBlock(WanBlock):
    def __init__(self, cfg: AvatarConfig):
        wan = cfg.wan
        super().__init__(wan.dim, wan.ffn_dim, wan.num_heads, wan.eps, wan.has_image_branch)
        if cfg.norm_input_visual:
            self.norm_x = LayerNormFP32(wan.dim, wan.eps, elementwise_affine=True)
        self.audio_cross_attn = AudioCrossAttention(wan.dim, cfg.audio_dim, wan.num_heads)

    def after_cross_attention(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h = self.norm_x(x) if hasattr(self, "norm_x") else x
        return x + self.audio_cross_attn(h, audio).float()


class AvatarModel(WanModel):
    """Wan I2V DiT with audio: `forward(..., audio=windows)` where windows are `[B, 4k+1, window, blocks, ch]`."""

    def __init__(self, cfg: AvatarConfig):
        object.__setattr__(self, "avatar", cfg)
        super().__init__(cfg.wan)
        self.audio_proj = AudioProjection(cfg)

    def make_block(self) -> AvatarBlock:
        return AvatarBlock(self.avatar)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,  # type: ignore[override]
                clip_fea: torch.Tensor | None = None, y: torch.Tensor | None = None,
                audio: torch.Tensor | None = None) -> torch.Tensor:
        if audio is None:
            raise ConfigurationError("The SkyReels V3 avatar DiT needs audio windows (audio=...).")
        tokens = self.audio_proj(audio)
        if tokens.shape[1] != x.shape[2]:
            raise ConfigurationError(
                f"{audio.shape[1]} audio frames give {tokens.shape[1]} latent frames; the latent has {x.shape[2]}."
            )
        return super().forward(x, t, context, clip_fea, y, audio=tokens)
