"""From Gemma's hidden states to the connectors' inputs: normalisation and the aggregate projection.

LTX-2 19B (`text_embedding_projection.aggregate_embed`, no bias, one projection for both modalities): per prompt
and per layer, over the valid tokens x hidden channels, `8 * (x - mean) / (max - min + 1e-6)`.
LTX-2.3 (`video_aggregate_embed` / `audio_aggregate_embed`, with bias): each token's hidden vector of each layer is
RMS-normalised, then scaled by `sqrt(out_width / hidden)` for each modality's projection.
Both lay the layers out as `[B, T, hidden, layers]` flattened hidden-major (`index = d * layers + l`) and zero the
padded tokens. Statistics are computed in float32 one layer at a time, so only the projection's input (in the
compute dtype) is ever held for all layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

EPS = 1e-6
SCALE = 8.0

LayerNorm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def minmax_norm(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """LTX-2 19B, one layer `[B, T, D]` in float32: per prompt over its valid tokens and all channels."""
    valid = valid[..., None]
    count = valid.sum(dim=(1, 2), keepdim=True).to(x.dtype) * x.shape[-1]
    mean = x.masked_fill(~valid, 0.0).sum(dim=(1, 2), keepdim=True) / (count + EPS)
    low = x.masked_fill(~valid, float("inf")).amin(dim=(1, 2), keepdim=True)
    high = x.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
    return SCALE * (x - mean) / (high - low + EPS)


def token_rms_norm(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """LTX-2.3, one layer `[B, T, D]` in float32: each token's hidden vector to unit RMS."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + EPS)


def normalized_features(states: Sequence[torch.Tensor], mask: torch.Tensor, norm: LayerNorm,
                        scales: Sequence[float], dtype: torch.dtype) -> list[torch.Tensor]:
    """For each of `scales`: `[B, T, D * layers]` in `dtype` = `norm(layer) * scale`, padded tokens zero."""
    batch, length, dim = states[0].shape
    valid = mask.bool()
    outputs = [torch.empty(batch, length, dim, len(states), dtype=dtype, device=states[0].device) for _ in scales]
    for layer, state in enumerate(states):
        normed = norm(state.float(), valid).masked_fill(~valid[..., None], 0.0)
        for out, scale in zip(outputs, scales):
            out[..., layer] = normed * scale if scale != 1.0 else normed
    return [out.flatten(2) for out in outputs]


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

    def forward(self, states: Sequence[torch.Tensor], mask: torch.Tensor,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Gemma hidden states (`layers` x `[B, T, hidden]`) -> (video, audio) features in `dtype`."""
        if not self.per_modality:
            (features,) = normalized_features(states, mask, minmax_norm, [1.0], dtype)
            projected = self.aggregate_embed(features)
            return projected, projected
        video, audio = self.video_aggregate_embed, self.audio_aggregate_embed
        scales = [math.sqrt(video.out_features / self.hidden), math.sqrt(audio.out_features / self.hidden)]
        video_in, audio_in = normalized_features(states, mask, token_rms_norm, scales, dtype)
        return video(video_in), audio(audio_in)
