"""LTX-2.5 duration head: the natural length of the shot a caption describes, from the text connectors' outputs.

Video and audio connector tokens are projected to a shared width, tagged with a learned modality vector,
concatenated, pooled by learned query tokens (multi-head cross-attention, no mask: connector outputs are all
valid) and mapped by a GELU(tanh) MLP to a log-duration; `forward` returns seconds `[B]`. Parameter names are
ltx-core's (`nn.MultiheadAttention` layout under `attention_pooler.cross_attn.`), stored under `duration_head.`.

`predict_frames` turns one prediction into a frame count as ltx-pipelines' `DurationPredictor` does: seconds x fps
rounded, clamped to [min_seconds, max_seconds] x fps, floored to the VAE grid 8k + 1 (snapped up when that
undershoots the minimum). The pipeline uses it when a request gives no frame count.
"""

from __future__ import annotations

import json
import logging
import os

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videosdgx.runtime.attention import attention
from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file

log = logging.getLogger(__name__)
PREFIX = "duration_head."
LOADER = "the LTX-2.5 duration-head loader (videosdgx.ltx2.duration_head25)"


class AttentionPooler(nn.Module):
    def __init__(self, dim: int, queries: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query_tokens = nn.Parameter(torch.zeros(queries, dim))
        self.cross_attn = nn.Module()
        self.cross_attn.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.cross_attn.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.cross_attn.out_proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        w_q, w_k, w_v = self.cross_attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.cross_attn.in_proj_bias.chunk(3)
        q = F.linear(self.query_tokens, w_q, b_q).expand(tokens.shape[0], -1, -1)
        k, v = F.linear(tokens, w_k, b_k), F.linear(tokens, w_v, b_v)
        out = attention(*(rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v)))
        return self.cross_attn.out_proj(rearrange(out, "b h l d -> b l (h d)"))


class DurationHead(nn.Module):
    def __init__(self, video_dim: int, audio_dim: int, hidden: int = 256, queries: int = 1, heads: int = 4,
                 mlp_hidden: int = 256):
        super().__init__()
        self.video_input_proj = nn.Linear(video_dim, hidden)
        self.video_modality_emb = nn.Parameter(torch.zeros(hidden))
        self.audio_input_proj = nn.Linear(audio_dim, hidden)
        self.audio_modality_emb = nn.Parameter(torch.zeros(hidden))
        self.attention_pooler = AttentionPooler(hidden, queries, heads)
        self.mlp_hidden = nn.Linear(hidden * queries, mlp_hidden)
        self.mlp_out = nn.Linear(mlp_hidden, 1)

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        """Seconds `[B]` from video `[B, T, Dv]` and / or audio `[B, T, Da]` connector outputs."""
        if video is None and audio is None:
            raise ValueError("the duration head needs video and / or audio connector outputs")
        groups = []
        if video is not None:
            groups.append(self.video_input_proj(video.to(self.video_modality_emb.dtype)) + self.video_modality_emb)
        if audio is not None:
            groups.append(self.audio_input_proj(audio.to(self.audio_modality_emb.dtype)) + self.audio_modality_emb)
        pooled = self.attention_pooler(torch.cat(groups, dim=1)).flatten(1)
        return self.mlp_out(F.gelu(self.mlp_hidden(pooled), approximate="tanh")).squeeze(-1).float().exp()

    @torch.no_grad()
    def predict_frames(self, video: torch.Tensor | None, audio: torch.Tensor | None, fps: float,
                       min_seconds: float = 1.0, max_seconds: float = 20.0, frame_step: int = 8) -> int:
        """Frame count (frame_step * k + 1) for ONE prompt's connector outputs."""
        seconds = self(video, audio)
        if seconds.numel() != 1:
            raise ValueError("predict_frames takes one prompt's connector outputs")
        seconds = seconds.item()
        return seconds_to_frames(seconds, fps, min_seconds, max_seconds, frame_step)


def seconds_to_frames(seconds: float, fps: float, min_seconds: float = 1.0, max_seconds: float = 20.0,
                      frame_step: int = 8) -> int:
    """ltx-pipelines `seconds_to_clamped_num_frames`."""
    min_frames, max_frames = max(1, round(min_seconds * fps)), round(max_seconds * fps)
    raw = max(min_frames, min(round(seconds * fps), max_frames))
    frames = (raw - 1) // frame_step * frame_step + 1
    if frames < min_frames:
        frames = min(-(-(min_frames - 1) // frame_step) * frame_step + 1, max_frames)
    if not min_seconds <= seconds <= max_seconds:
        log.warning("Duration head predicted %.2f s, outside [%.2f, %.2f] s: using %d frames", seconds, min_seconds,
                    max_seconds, frames)
    else:
        log.info("Duration head predicted %.2f s: %d frames at %.2f fps", seconds, frames, fps)
    return frames


def load_duration_head(path: str | os.PathLike, request: LoadRequest) -> LoadedModel:
    """`ltx-2.5-duration-head-*.safetensors` (or any file holding `duration_head.*`). Widths from the shapes; head
    count from the embedded `config` (`duration_head.num_pooler_heads`, default 4 as ltx-core)."""

    def build(shapes: dict[str, tuple[int, ...]], checkpoint: Checkpoint) -> DurationHead:
        raw = checkpoint.metadata.get("config")
        settings = (json.loads(raw) if raw else {}).get("duration_head", {})
        hidden, video_dim = shapes["video_input_proj.weight"]
        queries = shapes["attention_pooler.query_tokens"][0]
        return DurationHead(video_dim, shapes["audio_input_proj.weight"][1], hidden, queries,
                            int(settings.get("num_pooler_heads", 4)), shapes["mlp_hidden.weight"][0])

    return load_model_file(path, family="ltx2", component="duration head", loader=LOADER, request=request,
                           key_map=lambda checkpoint: lambda k: k[len(PREFIX):] if k.startswith(PREFIX) else None,
                           build=build)
