"""MAGI-1's memory formula for the plan (`videosdgx.plan`): chunks in flight, the KV cache of clean chunks, T5 and
the tiled VAE decode.

The phases follow `MagiPipeline`: the DiT and the VAE are loaded first and stay; T5 is loaded to encode the
prompts and freed right after with `--low-memory`. The DiT formulas are Wan's (`videosdgx.wan.memory`: the
feed-forward intermediates and float32 stream rows per token), applied to MAGI-1's tokens:

* sampling: one model call denoises the chunks of the window (4) plus, at a stage's first step, the previous
  (now clean) chunk and, when distilled and nearly clean, a copy of the first one: up to `window + 2` chunks of
  `6 * (h / 2) * (w / 2)` tokens; guidance passes run one by one (batch 1). On top: the KV cache of the newest
  clean chunks (`max(noise2clean_kvrange) - 1` = 4), keys and values of every layer in the compute dtype, and one
  layer's keys and values of the chunks it reads (cache + in flight). With `--low-memory` the cache lives in host
  memory: the plan still counts it, which is exact on unified memory (DGX Spark) and on the CPU.
* text encoding: T5 v1.1 XXL has UMT5-XXL's widths: Wan's T5 formula. Without installed files T5 counts
  its encoder only (the released shards also hold the decoder, which is not loaded).
* decoding: each 24-frame chunk is decoded in 256-pixel tiles of `fps / 2` frames through the transformer VAE
  (`VAE_STREAM` float32 rows of its width per latent token of a tile, plus its MLP), the chunk's frames are
  assembled (a few float32 copies) and every decoded frame is kept until the video is returned.

The MAGI-1 constants are Wan's, not measured on MAGI-1 (bench/README.md says so).
"""

from __future__ import annotations

import functools
import math

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.magi1.config import DIT_CONFIGS, MagiDiTConfig, config_from_shapes
from videosdgx.magi1.sampler import SamplerSettings
from videosdgx.magi1.tiling import TILE_PIXELS
from videosdgx.magi1.variants import CHUNK_FRAMES, MagiVariant
from videosdgx.magi1.vae import MagiVAEConfig
from videosdgx.plan import Phase, Size
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.text.t5 import T5Config, T5Encoder
from videosdgx.wan.memory import sampling_activations, text_activations

VAE_STREAM = 6
CHUNK_COPIES = 3  # a decoded chunk: the tiles, the assembled rows, the clamped float32 frames
SPATIAL_FACTOR = 8


def dit_config(variant: MagiVariant, files: BundleFiles | None) -> MagiDiTConfig:
    """The DiT architecture from the installed shards' headers, else the variant's released size."""
    paths = files.all("dit") if files is not None else ()
    if not paths:
        return DIT_CONFIGS[variant.size]
    shapes = {}
    for path in paths:
        with open_checkpoint(path) as checkpoint:
            shapes.update({key: checkpoint.info(key).shape for key in checkpoint.keys()})
    return config_from_shapes(shapes, DIT_CONFIGS[variant.size].x_rescale)


def chunk_tokens(cfg: MagiDiTConfig, size: Size, settings: SamplerSettings) -> int:
    return settings.chunk_width * (size.height // SPATIAL_FACTOR // cfg.patch) * (size.width // SPATIAL_FACTOR
                                                                                 // cfg.patch)


def kv_bytes(cfg: MagiDiTConfig, tokens: int, cb: int) -> int:
    """Keys and values of `tokens` tokens in one layer."""
    return tokens * cfg.kv_heads * 2 * cfg.head_dim * cb


def sampling_phase_activations(cfg: MagiDiTConfig, size: Size, settings: SamplerSettings, cb: int) -> int:
    per_chunk = chunk_tokens(cfg, size, settings)
    cached = max(settings.noise2clean_kvrange) - 1
    in_flight = (settings.window + 2) * per_chunk
    cache = cfg.layers * kv_bytes(cfg, cached * per_chunk, cb)
    read = kv_bytes(cfg, cached * per_chunk + in_flight, cb)
    return sampling_activations(cfg, in_flight, cb, batch=1) + cache + read


def decoding_activations(vae: MagiVAEConfig, size: Size, fps: int, cb: int) -> int:
    tile = min(TILE_PIXELS, size.height) * min(TILE_PIXELS, size.width)
    tile_tokens = math.ceil(fps // 2 / vae.patch_length) * tile // vae.patch_size**2
    vit = tile_tokens * (int(vae.mlp_ratio * vae.embed_dim) * cb + VAE_STREAM * vae.embed_dim * 4)
    chunk = CHUNK_FRAMES * size.height * size.width * 3 * 4 * CHUNK_COPIES
    frames_out = size.frames * size.height * size.width * 3 * 4 * 2  # kept frames, then their concatenation
    return vit + chunk + frames_out


@functools.cache
def t5_encoder_bytes(cb: int) -> int:
    """T5 v1.1 XXL's encoder at the compute dtype (the shards also hold its decoder, which is not loaded)."""
    with torch.device("meta"):
        return sum(p.numel() for p in T5Encoder(T5Config.t5_v1_1_xxl()).parameters()) * cb


def magi1_memory_phases(variant: MagiVariant, files: BundleFiles | None, weights: dict[str, int], size: Size,
                        load: LoadRequest, low_memory: bool) -> list[Phase]:
    """Text encoding, sampling and decoding of one MAGI-1 run (registry hook `memory`)."""
    cb = load.dtype.itemsize
    kept = [("DiT", weights.get("dit", 0)), ("VAE", weights.get("vae", 0))]
    installed = files is not None and bool(files.all("text_encoder"))
    text_encoder = ("T5", weights.get("text_encoder", 0) if installed else t5_encoder_bytes(cb))
    after_text = tuple(kept if low_memory else [*kept, text_encoder])
    settings = SamplerSettings(steps=variant.steps, distill=variant.distill, window=variant.window,
                               noise2clean_kvrange=variant.noise2clean_kvrange)
    cfg = dit_config(variant, files)
    return [
        Phase("text encoding", tuple([*kept, text_encoder]), text_activations(T5Config.t5_v1_1_xxl(), cb)),
        Phase("sampling", after_text, sampling_phase_activations(cfg, size, settings, cb)),
        Phase("decoding", after_text, decoding_activations(MagiVAEConfig(), size, variant.fps, cb)),
    ]
