"""The LTX-2 19B / LTX-2.3 audio-video diffusion transformer; parameter names equal the official checkpoint keys
(under `model.diffusion_model.`).

Inputs are token sequences: video latents `[B, 128, F, H, W]` as `b (f h w) c`, audio latents `[B, 8, T, 16]`
as `b t (c f)`. Timesteps are sigmas in 0..1, per sample `[B, 1]` or per token `[B, T]` (image-to-video); the
output is the flow velocity of each stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from videosdgx.ltx2.config import CROSS_TIMESTEP_MODES, LTX2Config
from videosdgx.ltx2.rope import rope_tables
from videosdgx.ltx2.transformer_blocks import AdaLayerNormSingle, AVBlock, StreamArgs, TextProjection
from videosdgx.runtime.errors import ConfigurationError
from videosdgx.runtime.quantized_linear import compute_dtype


@dataclass
class Modality:
    """One stream's inputs: tokens `[B, T, C]`, sigma per token `[B, 1 or T]` (0..1), the sample's sigma `[B]`,
    RoPE bounds `[B, axes, T, 2]`, text context `[B, L, C_text]` and an optional boolean context mask `[B, L]`."""

    tokens: torch.Tensor
    timesteps: torch.Tensor
    sigma: torch.Tensor
    positions: torch.Tensor
    context: torch.Tensor
    context_mask: torch.Tensor | None = None


@dataclass
class Perturbation:
    """Guidance perturbations per sample (1 = normal, 0 = perturbed), each `[B]`.

    `stg_keep`: in `stg_blocks`, self-attention (video and audio) outputs its value projection instead.
    `av_keep`: audio<->video cross-attention switched off in every block (modality guidance).
    """

    stg_blocks: tuple[int, ...] = ()
    stg_keep: torch.Tensor | None = None
    av_keep: torch.Tensor | None = None


class LTX2Model(nn.Module):
    """LTX-2 AV DiT. `cross_timestep` selects how audio<->video cross-attention AdaLN gets its timesteps
    (config.CROSS_TIMESTEP_MODES; default "mixed" = Lightricks' current code)."""

    def __init__(self, cfg: LTX2Config, cross_timestep: str = "mixed"):
        super().__init__()
        if cross_timestep not in CROSS_TIMESTEP_MODES:
            raise ConfigurationError(f"cross_timestep must be one of {CROSS_TIMESTEP_MODES}, got {cross_timestep!r}.")
        self.cfg, self.cross_timestep = cfg, cross_timestep
        d, da, rows = cfg.dim, cfg.audio_dim, cfg.modulation_rows
        self.patchify_proj = nn.Linear(cfg.in_channels, d)
        self.audio_patchify_proj = nn.Linear(cfg.audio_in_channels, da)
        self.adaln_single = AdaLayerNormSingle(d, rows)
        self.audio_adaln_single = AdaLayerNormSingle(da, rows)
        if cfg.cross_attention_adaln and cfg.prompt_adaln:
            self.prompt_adaln_single = AdaLayerNormSingle(d, 2)
            self.audio_prompt_adaln_single = AdaLayerNormSingle(da, 2)
        self.av_ca_video_scale_shift_adaln_single = AdaLayerNormSingle(d, 4)
        self.av_ca_audio_scale_shift_adaln_single = AdaLayerNormSingle(da, 4)
        self.av_ca_a2v_gate_adaln_single = AdaLayerNormSingle(d, 1)
        self.av_ca_v2a_gate_adaln_single = AdaLayerNormSingle(da, 1)
        if cfg.caption_channels is not None:
            self.caption_projection = TextProjection(cfg.caption_channels, d)
            self.audio_caption_projection = TextProjection(cfg.caption_channels, da)
        self.transformer_blocks = nn.ModuleList(
            AVBlock(d, cfg.num_heads, cfg.head_dim, cfg.cross_attention_dim, da, cfg.audio_num_heads,
                    cfg.audio_head_dim, cfg.audio_cross_attention_dim, cfg.norm_eps, cfg.rope_type,
                    cfg.gated_attention, cfg.cross_attention_adaln, cfg.ff_bias, cfg.audio_ff_bias)
            for _ in range(cfg.num_layers)
        )
        self.scale_shift_table = nn.Parameter(torch.empty(2, d))
        self.audio_scale_shift_table = nn.Parameter(torch.empty(2, da))
        self.proj_out = nn.Linear(d, cfg.out_channels)
        self.audio_proj_out = nn.Linear(da, cfg.audio_out_channels)

    def forward(self, video: Modality, audio: Modality, perturbation: Perturbation | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities `([B, Tv, out], [B, Ta, audio_out])`, float32."""
        cfg = self.cfg
        perturbation = perturbation or Perturbation()
        v_args, v_embedded = self._stream(video, audio, "video", cfg.num_heads, cfg.max_pos)
        a_args, a_embedded = self._stream(audio, video, "audio", cfg.audio_num_heads, cfg.audio_max_pos)
        vx = self.patchify_proj(video.tokens.to(compute_dtype(self.patchify_proj))).float()
        ax = self.audio_patchify_proj(audio.tokens.to(compute_dtype(self.audio_patchify_proj))).float()
        stg_keep = _per_sample(perturbation.stg_keep)
        av_keep = _per_sample(perturbation.av_keep)
        for index, block in enumerate(self.transformer_blocks):
            keep = stg_keep if index in perturbation.stg_blocks else None
            vx, ax = block(vx, ax, v_args, a_args, keep, av_keep)
        return (self._output(vx, v_embedded, self.scale_shift_table, self.proj_out),
                self._output(ax, a_embedded, self.audio_scale_shift_table, self.audio_proj_out))

    def _stream(self, own: Modality, other: Modality, name: str, heads: int, max_pos: tuple[int, ...],
                ) -> tuple[StreamArgs, torch.Tensor]:
        cfg = self.cfg
        prefix = "" if name == "video" else "audio_"
        scale = cfg.timestep_scale_multiplier
        timesteps = _as_2d(own.timesteps, own.tokens.shape[:2], name) * scale
        modulation, embedded = getattr(self, f"{prefix}adaln_single")(timesteps)
        prompt = None
        if cfg.cross_attention_adaln and cfg.prompt_adaln:
            prompt, _ = getattr(self, f"{prefix}prompt_adaln_single")(own.sigma.reshape(-1, 1) * scale)
        context = own.context
        if cfg.caption_channels is not None:
            context = getattr(self, f"{prefix}caption_projection")(context)
        other_sigma = other.sigma.reshape(-1, 1) * scale
        scale_shift_t = other_sigma if self.cross_timestep == "cross" else timesteps
        gate_t = timesteps if self.cross_timestep == "own" else other_sigma
        kind = "video" if name == "video" else "audio"
        cross_scale_shift, _ = getattr(self, f"av_ca_{kind}_scale_shift_adaln_single")(scale_shift_t)
        gate_module = self.av_ca_a2v_gate_adaln_single if name == "video" else self.av_ca_v2a_gate_adaln_single
        cross_gate, _ = gate_module(gate_t * (cfg.av_ca_timestep_scale_multiplier / scale))
        dim = cfg.dim if name == "video" else cfg.audio_dim
        pe = rope_tables(own.positions, dim, heads, max_pos, cfg.rope_theta, cfg.rope_float64)
        cross_pe = rope_tables(own.positions[:, :1], cfg.audio_cross_attention_dim, heads, (cfg.cross_pe_max_pos,),
                               cfg.rope_theta, cfg.rope_float64)
        mask = None if own.context_mask is None else own.context_mask.bool()[:, None, None, :]
        args = StreamArgs(modulation, context, mask, pe, cross_pe, cross_scale_shift, cross_gate, prompt)
        return args, embedded

    def _output(self, x: torch.Tensor, embedded: torch.Tensor, table: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        shift, scale = (table.float()[None, None] + embedded[:, :, None]).unbind(dim=2)
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), eps=self.cfg.norm_eps) * (1 + scale) + shift
        return proj(x.to(compute_dtype(proj))).float()


def _as_2d(t: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    batch, tokens = shape
    t = t.reshape(batch, -1) if t.ndim != 2 else t
    if t.shape[1] not in (1, tokens):
        raise ConfigurationError(f"{name} timesteps must be [batch, 1] or [batch, {tokens}], got {list(t.shape)}.")
    return t.float()


def _per_sample(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask.float().reshape(-1, 1, 1)
