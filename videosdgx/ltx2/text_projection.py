"""From Gemma's stacked hidden states to the connectors' inputs: normalisation and the aggregate projection.

LTX-2 19B (`text_embedding_projection.aggregate_embed`, no bias, one projection for both modalities): per prompt
and per layer, over the valid tokens x hidden channels, `8 * (x - mean) / (max - min + 1e-6)`.
LTX-2.3 (`video_aggregate_embed` / `audio_aggregate_embed`, with bias): each token's hidden vector of each layer is
RMS-normalised, then scaled by `sqrt(out_width / hidden)` for each modality's projection.
Both flatten `[B, T, hidden, layers]` hidden-major (`index = d * layers + l`) and zero the padded tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

EPS = 1e-6
SCALE = 8.0


def stack_hidden_states(states: list[torch.Tensor]) -> torch.Tensor:
    """`layers` tensors `[B, T, D]` -> float32 `[B, T, D, layers]`."""
    return torch.stack([s.float() for s in states], dim=-1)


def per_layer_minmax_norm(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LTX-2 19B: `[B, T, D, L]` -> `[B, T, D * L]`, per prompt and layer over its valid tokens."""
    valid = mask.bool()[:, :, None, None]
    count = mask.sum(1).to(x.dtype)[:, None, None, None] * x.shape[2]
    mean = x.masked_fill(~valid, 0.0).sum(dim=(1, 2), keepdim=True) / (count + EPS)
    low = x.masked_fill(~valid, float("inf")).amin(dim=(1, 2), keepdim=True)
    high = x.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
    normed = SCALE * (x - mean) / (high - low + EPS)
    return normed.masked_fill(~valid, 0.0).flatten(2)


def per_token_rms_norm(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LTX-2.3: `[B, T, D, L]` -> `[B, T, D * L]`, each token's hidden vector of each layer to unit RMS."""
    normed = x * torch.rsqrt(x.pow(2).mean(dim=2, keepdim=True) + EPS)
    return normed.masked_fill(~mask.bool()[:, :, None, None], 0.0).flatten(2)


class TextEmbeddingProjection(nn.Module):
    """`text_embedding_projection.*`: shared (19B) or per-modality (2.3) projection of the normalised features."""

    def __init__(self, hidden: int, layers: int, video_dim: int, audio_dim: int, per_modality: bool):
        super().__init__()
        self.hidden = hidden
        self.per_modality = per_modality
        width = hidden * layers
        if per_modality:
            self.video_aggregate_embed = nn.Linear(width, video_dim)
            self.audio_aggregate_embed = nn.Linear(width, audio_dim)
        else:
            self.aggregate_embed = nn.Linear(width, video_dim, bias=False)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Gemma hidden states (`layers` x `[B, T, hidden]`) -> (video, audio) features in `dtype`."""
        x = stack_hidden_states(states)
        if not self.per_modality:
            features = self.aggregate_embed(per_layer_minmax_norm(x, mask).to(dtype))
            return features, features
        normed = per_token_rms_norm(x, mask)
        video, audio = self.video_aggregate_embed, self.audio_aggregate_embed
        video_scale = math.sqrt(video.out_features / self.hidden)
        audio_scale = math.sqrt(audio.out_features / self.hidden)
        return video((normed * video_scale).to(dtype)), audio((normed * audio_scale).to(dtype))
