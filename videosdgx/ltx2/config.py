"""Architecture of an LTX-2 audio-video DiT, read from the checkpoint's embedded `config` metadata.

Lightricks' loader (ltx-core `LTXModelConfigurator.from_metadata` @ 400fd310) reads `json.loads(metadata["config"])
["transformer"]` and takes its own defaults for absent keys; so do we, with the same defaults. Several behaviours
(RoPE layout, float64 frequency grid, cross-modal gate timestep scale) are not visible in tensor shapes, so a file
without that metadata is refused rather than guessed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from videosdgx.runtime.errors import CheckpointError, ConfigurationError

log = logging.getLogger(__name__)

ROPE_TYPES = ("split", "interleaved")
# How the audio<->video cross-attention AdaLN gets its timesteps (see `LTX2Config.cross_timestep`):
#   "mixed": scale/shift from the modality's own per-token timesteps, gate from the other modality's sigma
#            (ltx-core >= 203d484, 2026-05-28, = HEAD; the default);
#   "cross": scale/shift and gate from the other modality's sigma (ltx-core 822ce3c..203d484 = PyPI 1.0.0;
#            diffusers `use_cross_timestep=True`, what its LTX2Pipeline passes);
#   "own":   scale/shift and gate from the modality's own per-token timesteps (ltx-core before 822ce3c, Jan 2026;
#            diffusers `use_cross_timestep=False`).
# The three agree whenever all tokens of both modalities share one sigma (text-to-video).
CROSS_TIMESTEP_MODES = ("mixed", "cross", "own")
VERSIONS = ("19B", "2.3")

# ltx-core's defaults for keys a header may omit.
_DEFAULTS = {
    "num_attention_heads": 32, "attention_head_dim": 128, "in_channels": 128, "out_channels": 128, "num_layers": 48,
    "cross_attention_dim": 4096, "norm_eps": 1e-6, "positional_embedding_theta": 10000.0,
    "positional_embedding_max_pos": [20, 2048, 2048], "timestep_scale_multiplier": 1000,
    "audio_num_attention_heads": 32, "audio_attention_head_dim": 64, "audio_in_channels": 128,
    "audio_out_channels": 128, "audio_cross_attention_dim": 2048, "audio_positional_embedding_max_pos": [20],
    "av_ca_timestep_scale_multiplier": 1, "rope_type": "split", "frequencies_precision": False,
    "apply_gated_attention": False, "cross_attention_adaln": False, "use_prompt_adaln_single": True,
    "caption_proj_before_connector": False, "ff_bias": True, "audio_ff_bias": True,
}
# Values ltx-core asserts; anything else is a model this port does not implement.
_FIXED = {
    "activation_fn": "gelu-approximate", "qk_norm": "rms_norm", "standardization_norm": "rms_norm",
    "norm_elementwise_affine": False, "positional_embedding_type": "rope", "use_middle_indices_grid": True,
    "use_audio_video_cross_attention": True, "attention_bias": True, "use_keyframes_abs_pos_embedding": False,
}


@dataclass(frozen=True)
class LTX2Config:
    """One LTX-2 AV DiT. Video width `dim = num_heads * head_dim`, audio width `audio_dim` likewise."""

    num_heads: int = 32
    head_dim: int = 128
    audio_num_heads: int = 32
    audio_head_dim: int = 64
    num_layers: int = 48
    in_channels: int = 128
    out_channels: int = 128
    audio_in_channels: int = 128
    audio_out_channels: int = 128
    cross_attention_dim: int = 4096
    audio_cross_attention_dim: int = 2048
    caption_channels: int | None = 3840  # None: no caption projection in the DiT (2.3: it lives on the text side)
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_pos: tuple[int, ...] = (20, 2048, 2048)
    audio_max_pos: tuple[int, ...] = (20,)
    timestep_scale_multiplier: float = 1000.0
    av_ca_timestep_scale_multiplier: float = 1000.0
    rope_type: str = "split"
    rope_float64: bool = True
    gated_attention: bool = False
    cross_attention_adaln: bool = False
    prompt_adaln: bool = True  # 2.3: the prompt AdaLN MLPs exist (use_prompt_adaln_single)
    ff_bias: bool = True
    audio_ff_bias: bool = True

    def __post_init__(self):
        if self.rope_type not in ROPE_TYPES:
            raise ConfigurationError(f"Unknown LTX-2 rope_type {self.rope_type!r}; expected one of {ROPE_TYPES}.")
        if self.audio_cross_attention_dim != self.audio_dim:
            raise ConfigurationError(
                f"LTX-2 audio cross-attention width {self.audio_cross_attention_dim} must equal the audio width "
                f"{self.audio_dim} (audio heads x head size)."
            )

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def audio_dim(self) -> int:
        return self.audio_num_heads * self.audio_head_dim

    @property
    def modulation_rows(self) -> int:
        """Rows of each block's AdaLN table: 6, or 9 with the text cross-attention AdaLN of 2.3."""
        return 9 if self.cross_attention_adaln else 6

    @property
    def version(self) -> str:
        """"2.3" for the gated / cross-attention-AdaLN generation, "19B" for LTX-2."""
        return "2.3" if self.gated_attention or self.cross_attention_adaln else "19B"

    @property
    def cross_pe_max_pos(self) -> int:
        return max(self.max_pos[0], self.audio_max_pos[0])


def config_from_metadata(metadata: Mapping[str, str], source: str) -> LTX2Config:
    """The DiT configuration embedded in an LTX-2 checkpoint (`__metadata__["config"]["transformer"]`)."""
    raw = metadata.get("config")
    if raw is None:
        raise CheckpointError(
            f"{source} carries no embedded LTX-2 `config` metadata, and the model's RoPE layout and timestep "
            "conventions cannot be read from its tensors. Use the official Lightricks single file "
            "(ltx-2-19b-*.safetensors / ltx-2.3-22b-*.safetensors) or a split file that kept its metadata."
        )
    try:
        transformer = json.loads(raw).get("transformer")
    except (json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{source}: its `config` metadata is not a JSON object; the file is damaged.") from None
    if not isinstance(transformer, dict):
        raise CheckpointError(f"{source}: its `config` metadata has no `transformer` section; not an LTX-2 DiT.")
    for key, expected in _FIXED.items():
        if key in transformer and transformer[key] != expected:
            raise CheckpointError(
                f"{source}: transformer {key} = {transformer[key]!r}, but VideosDGX implements LTX-2 with "
                f"{expected!r}. This is a model variant VideosDGX does not run (LTX-2 19B and LTX-2.3 are supported)."
            )
    absent = sorted(key for key in _DEFAULTS if key not in transformer)
    if absent:
        log.info("%s: config omits %s; using Lightricks' defaults", source, ", ".join(absent))
    c = {**_DEFAULTS, **transformer}
    if not c["caption_proj_before_connector"] and "caption_channels" not in c:
        raise CheckpointError(f"{source}: its `config` metadata lacks transformer caption_channels; damaged file?")
    if not c["ff_bias"] or not c["audio_ff_bias"]:
        raise CheckpointError(f"{source} is an LTX-2.5-generation DiT (no feed-forward bias); VideosDGX runs "
                              "LTX-2 19B and LTX-2.3.")
    return LTX2Config(
        num_heads=c["num_attention_heads"], head_dim=c["attention_head_dim"],
        audio_num_heads=c["audio_num_attention_heads"], audio_head_dim=c["audio_attention_head_dim"],
        num_layers=c["num_layers"], in_channels=c["in_channels"], out_channels=c["out_channels"],
        audio_in_channels=c["audio_in_channels"], audio_out_channels=c["audio_out_channels"],
        cross_attention_dim=c["cross_attention_dim"], audio_cross_attention_dim=c["audio_cross_attention_dim"],
        caption_channels=None if c["caption_proj_before_connector"] else c["caption_channels"],
        norm_eps=c["norm_eps"], rope_theta=c["positional_embedding_theta"],
        max_pos=tuple(c["positional_embedding_max_pos"]), audio_max_pos=tuple(c["audio_positional_embedding_max_pos"]),
        timestep_scale_multiplier=c["timestep_scale_multiplier"],
        av_ca_timestep_scale_multiplier=c["av_ca_timestep_scale_multiplier"], rope_type=c["rope_type"],
        rope_float64=c["frequencies_precision"] == "float64", gated_attention=c["apply_gated_attention"],
        cross_attention_adaln=c["cross_attention_adaln"], prompt_adaln=c["use_prompt_adaln_single"],
    )


def config_to_metadata(cfg: LTX2Config) -> dict:
    """The `transformer` section of the `config` metadata that describes `cfg` (what the official files carry)."""
    section = {
        "num_attention_heads": cfg.num_heads, "attention_head_dim": cfg.head_dim,
        "audio_num_attention_heads": cfg.audio_num_heads, "audio_attention_head_dim": cfg.audio_head_dim,
        "num_layers": cfg.num_layers, "in_channels": cfg.in_channels, "out_channels": cfg.out_channels,
        "audio_in_channels": cfg.audio_in_channels, "audio_out_channels": cfg.audio_out_channels,
        "cross_attention_dim": cfg.cross_attention_dim, "audio_cross_attention_dim": cfg.audio_cross_attention_dim,
        "norm_eps": cfg.norm_eps, "positional_embedding_theta": cfg.rope_theta,
        "positional_embedding_max_pos": list(cfg.max_pos),
        "audio_positional_embedding_max_pos": list(cfg.audio_max_pos),
        "timestep_scale_multiplier": cfg.timestep_scale_multiplier,
        "av_ca_timestep_scale_multiplier": cfg.av_ca_timestep_scale_multiplier, "rope_type": cfg.rope_type,
        "frequencies_precision": "float64" if cfg.rope_float64 else "float32",
        "apply_gated_attention": cfg.gated_attention, "cross_attention_adaln": cfg.cross_attention_adaln,
        "use_prompt_adaln_single": cfg.prompt_adaln, "caption_proj_before_connector": cfg.caption_channels is None,
        "activation_fn": "gelu-approximate", "qk_norm": "rms_norm", "standardization_norm": "rms_norm",
        "norm_elementwise_affine": False, "positional_embedding_type": "rope", "use_middle_indices_grid": True,
    }
    if cfg.caption_channels is not None:
        section["caption_channels"] = cfg.caption_channels
    return section
