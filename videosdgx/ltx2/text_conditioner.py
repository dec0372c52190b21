"""LTX-2 prompt conditioning after Gemma: aggregate projection + video / audio embeddings connectors.

Weights come from the official single-file checkpoint (`text_embedding_projection.*` and
`model.diffusion_model.{video,audio}_embeddings_connector.*`) or from separate files holding those tensors, with or
without the `model.diffusion_model.` prefix (e.g. `ltx-2-19b-dev-fp4_projections_only.safetensors`). Sizes come from
the shapes; the head size and RoPE settings from the checkpoint's embedded `config` (its `transformer` part) when
present, else the LTX-2 values: head size 128 (audio connector of LTX-2.3: from its gate), split RoPE over
positions / 4096, base 1e4, float64 grid.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import torch
from torch import nn

from videosdgx.ltx2.connectors import ConnectorConfig, EmbeddingsConnector
from videosdgx.ltx2.text_projection import TextEmbeddingProjection
from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.errors import CheckpointError, WrongComponentError
from videosdgx.runtime.identify import identify
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file

log = logging.getLogger(__name__)

LOADER = "the LTX-2 text encoder loader"
DIT_PREFIX = "model.diffusion_model."
PROJECTION = "text_embedding_projection."
CONNECTORS = ("video_embeddings_connector.", "audio_embeddings_connector.")
DEFAULT_HEAD_DIM = 128


@dataclass(frozen=True)
class TextConditionerConfig:
    hidden: int  # Gemma width
    layers: int  # Gemma hidden states used (decoder layers + 1)
    per_modality: bool  # LTX-2.3 projections (with bias, per-token RMS norm)
    video: ConnectorConfig
    audio: ConnectorConfig


class LTX2TextConditioner(nn.Module):
    """`(Gemma hidden states, mask [B, T]) -> (video context [B, T, Dv], audio context [B, T, Da], mask)`.

    The returned mask is all ones: after the register substitution every position carries information.
    """

    def __init__(self, cfg: TextConditionerConfig):
        super().__init__()
        self.cfg = cfg
        self.text_embedding_projection = TextEmbeddingProjection(cfg.hidden, cfg.layers, cfg.video.dim,
                                                                 cfg.audio.dim, cfg.per_modality)
        self.video_embeddings_connector = EmbeddingsConnector(cfg.video)
        self.audio_embeddings_connector = EmbeddingsConnector(cfg.audio)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(states) != self.cfg.layers:
            raise ValueError(f"got {len(states)} hidden states, the projection takes {self.cfg.layers}")
        dtype = self.video_embeddings_connector.learnable_registers.dtype
        video, audio = self.text_embedding_projection(states, mask, dtype)
        video = self.video_embeddings_connector(video, mask)
        audio = self.audio_embeddings_connector(audio, mask)
        return video, audio, torch.ones_like(mask)


def text_side_key(key: str) -> str | None:
    """Module name of a text-side tensor (projection or connectors), None for every other tensor."""
    if key.startswith(PROJECTION):
        return key
    name = key.removeprefix(DIT_PREFIX)
    return name if name.startswith(CONNECTORS) else None


def check_text_side(shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Refuse files that lack the projection or a connector, naming what is missing."""
    has_projection = any(name.startswith(PROJECTION) for name in shapes)
    missing = [c.rstrip(".") for c in CONNECTORS if f"{c}learnable_registers" not in shapes]
    if has_projection and missing:
        raise CheckpointError(
            f"{source} holds the LTX-2 text projection but not the embeddings connectors ({', '.join(missing)}). "
            "Give the LTX-2 checkpoint itself, or add the connector file (e.g. Kijai's "
            "ltx-2-19b-embeddings_connector_*.safetensors) to the text projection files."
        )
    if not has_projection:
        what = "the embeddings connectors but not" if not missing else "neither the embeddings connectors nor"
        raise CheckpointError(
            f"{source} holds {what} the LTX-2 text projection (text_embedding_projection.*). Give the LTX-2 "
            "checkpoint itself, or add its projections file (e.g. ltx-2-19b-dev-fp4_projections_only.safetensors)."
        )


def _connector_config(shapes: dict, prefix: str, head_dim: int, transformer: dict) -> ConnectorConfig:
    registers, dim = shapes[f"{prefix}learnable_registers"]
    block = f"{prefix}transformer_1d_blocks.0."
    gate = shapes.get(f"{block}attn1.to_gate_logits.weight")
    if gate is None and dim % head_dim:
        raise CheckpointError(
            f"The {prefix.rstrip('.')} is {dim} wide, which does not split into heads of {head_dim}, and neither "
            "gates nor an embedded config give its head count. Pass the LTX-2 checkpoint's config (settings=...)."
        )
    heads = gate[0] if gate else dim // head_dim
    layers = len({name.split(".")[2] for name in shapes if name.startswith(f"{prefix}transformer_1d_blocks.")})
    max_pos = transformer.get("connector_positional_embedding_max_pos", [4096])
    return ConnectorConfig(
        heads=heads, head_dim=dim // heads, layers=layers, registers=registers,
        ff_dim=shapes[f"{block}ff.net.0.proj.weight"][0], gated=gate is not None,
        rope_type=transformer.get("rope_type", "split"), rope_max_pos=float(max_pos[0]),
        rope_theta=float(transformer.get("positional_embedding_theta", 10000.0)),
        rope_double_precision=transformer.get("frequencies_precision", "float64") == "float64",
    )


def conditioner_config(shapes: dict[str, tuple[int, ...]], transformer: dict, hidden: int,
                       source: str) -> TextConditionerConfig:
    """Config from module-name shapes, the checkpoint's `transformer` config and the Gemma width."""
    check_text_side(shapes, source)
    per_modality = f"{PROJECTION}video_aggregate_embed.weight" in shapes
    weight = f"{PROJECTION}{'video_aggregate_embed' if per_modality else 'aggregate_embed'}.weight"
    width = shapes[weight][1]
    if width % hidden:
        raise WrongComponentError(
            f"{source}: the text projection takes {width} features, not a multiple of this Gemma's width {hidden}. "
            "LTX-2 needs Gemma 3 12B (3840 wide, 48 layers)."
        )
    head_dim = int(transformer.get("connector_attention_head_dim", DEFAULT_HEAD_DIM))
    audio_head_dim = int(transformer.get("audio_connector_attention_head_dim", head_dim))
    return TextConditionerConfig(
        hidden=hidden, layers=width // hidden, per_modality=per_modality,
        video=_connector_config(shapes, CONNECTORS[0], head_dim, transformer),
        audio=_connector_config(shapes, CONNECTORS[1], audio_head_dim, transformer),
    )


def read_transformer_config(path: str | os.PathLike | list) -> dict:
    """The embedded `transformer` config of an LTX-2 checkpoint file ({} when it has none)."""
    with open_checkpoint(path) as checkpoint:
        return transformer_config(checkpoint)


def transformer_config(checkpoint: Checkpoint) -> dict:
    """The `transformer` part of the embedded `config` JSON, or {} (logged) when the file has none."""
    raw = checkpoint.metadata.get("config")
    if raw is None:
        log.info("%s has no embedded config: using LTX-2's connector RoPE settings", checkpoint.name)
        return {}
    try:
        return json.loads(raw).get("transformer", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(
            f"{checkpoint.name} has an unreadable embedded config ({exc}). Download it again.") from None


def load_text_conditioner(path: str | os.PathLike | list, request: LoadRequest, hidden: int,
                          settings: dict | None = None) -> LoadedModel:
    """The projection + connectors from an LTX-2 / 2.3 checkpoint or from separate text-side files.

    `settings`: the `transformer` config to use instead of the file's own (e.g. `read_transformer_config` of the
    DiT checkpoint when the text side comes from a separate file without an embedded config).
    """
    with open_checkpoint(path) as checkpoint:
        component = identify(checkpoint).component
    if component not in ("checkpoint", "text projection"):
        component = "text projection"  # load_model_file refuses the file with the right message

    def build(shapes: dict[str, tuple[int, ...]], checkpoint: Checkpoint) -> LTX2TextConditioner:
        transformer = settings if settings is not None else transformer_config(checkpoint)
        cfg = conditioner_config(shapes, transformer, hidden, checkpoint.name)
        return LTX2TextConditioner(cfg)

    return load_model_file(path, family="ltx2", component=component, loader=LOADER, request=request,
                           key_map=lambda checkpoint: text_side_key, build=build)
