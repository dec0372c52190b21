"""Wan's memory formula for the plan (`videosdgx.plan`): what each phase holds and its activation peak.

The phases follow `WanPipeline`: the VAE, the DiT expert(s) and CLIP vision are loaded first and stay; the UMT5
encoder is loaded to encode the prompts and freed right after with `--low-memory`. Activation peaks, in bytes,
with `cb` the compute dtype's size and classifier-free guidance run as one batch of two:

* sampling: the FFN of one block holds its two `[tokens, ffn_dim]` intermediates in the compute dtype next to
  about `DIT_STREAM` `[tokens, dim]` float32 tensors (residual stream, norms, modulated input):
  `2 * tokens * (2 * ffn_dim * cb + DIT_STREAM * dim * 4)`; attention is flash / memory-efficient (linear).
* decoding: frame by frame after the last temporal upsample, so the causal feature cache and one frame's working
  set scale with the pixels of one frame: `height * width * VAE_PER_PIXEL[version] * cb`, plus the float32 frames.
* text encoding: two prompts of 512 tokens through one UMT5 layer at a time:
  `2 * 512 * (2 * d_ff * cb + T5_STREAM * d_model * 4)`.

The constants were measured on CPU in float32 (bench/plan.py prints predicted vs measured peaks for several sizes).
The VAE's, after the frame-wise causal convolutions: 3286 values per pixel for the Wan 2.1 VAE and 2838 for the
Wan 2.2 VAE, each decoding 5 frames at 256x160 (the real widths, random weights); at 64x64 fixed costs weigh more
(4467 and 7126).
"""

from __future__ import annotations

from videosdgx.bundle_files import BundleFiles
from videosdgx.plan import Phase, Size
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.text.t5 import T5Config, config_from_shapes as t5_config_from_shapes
from videosdgx.text.t5_keys import t5_key_map
from videosdgx.wan.keys import detect_dit_layout, to_official_key
from videosdgx.wan.transformer import WAN_PRESETS, WanConfig, config_from_shapes
from videosdgx.wan.vae22 import WanVAE22Config

DIT_STREAM = 6
VAE_PER_PIXEL = {"2.1": 3300, "2.2": 2850}
T5_STREAM = 8
TEXT_TOKENS = 512
TEMPORAL_FACTOR = 4


def dit_config(variant, files: BundleFiles | None) -> WanConfig:
    """The DiT architecture: from the installed file's header, else the variant's released preset."""
    paths = (files.all("dit") or files.all("dit_high")) if files is not None else ()
    if paths:
        with open_checkpoint(paths[0]) as checkpoint:
            layout = detect_dit_layout(checkpoint.keys())
            shapes = {to_official_key(k, layout): checkpoint.info(k).shape for k in checkpoint.keys()}
        return config_from_shapes({k: v for k, v in shapes.items() if k is not None})
    name = variant.name.removesuffix("-480p").removesuffix("-720p").removesuffix("-lightning")
    return WAN_PRESETS[name]


def t5_config(files: BundleFiles | None) -> T5Config:
    path = files.optional("text_encoder") if files is not None else None
    if path is None:
        return T5Config.umt5_xxl()
    with open_checkpoint(path) as checkpoint:
        mapping = t5_key_map(checkpoint.keys())
        return t5_config_from_shapes({mapping[k]: checkpoint.info(k).shape for k in mapping})


def dit_tokens(variant, size: Size) -> int:
    stride = 16 if variant.vae == "2.2" else 8
    return latent_tokens(((size.frames - 1) // TEMPORAL_FACTOR + 1, size.height // stride, size.width // stride))


def latent_tokens(latent_shape) -> int:
    """DiT tokens of a latent `[..., T, h, w]` (patch 1x2x2)."""
    frames, height, width = latent_shape[-3:]
    return frames * (height // 2) * (width // 2)


def sampling_activations(cfg: WanConfig, tokens: int, compute_bytes: int, batch: int = 2) -> int:
    return batch * tokens * (2 * cfg.ffn_dim * compute_bytes + DIT_STREAM * cfg.dim * 4)


def decoding_activations(vae: str, size: Size, compute_bytes: int) -> int:
    frames_out = size.frames * size.height * size.width * 3 * 4 * 2  # decoded frames, then their concatenation
    return size.height * size.width * VAE_PER_PIXEL[vae] * compute_bytes + frames_out


def latent_decoding_activations(config, latent_shape, compute_bytes: int) -> int:
    """`decoding_activations` for a latent `[B, C, T, h, w]` and a loaded VAE's config."""
    frames = (latent_shape[-3] - 1) * TEMPORAL_FACTOR + 1
    size = Size(latent_shape[-1] * config.spatial_factor, latent_shape[-2] * config.spatial_factor, frames)
    version = "2.2" if isinstance(config, WanVAE22Config) else "2.1"
    return latent_shape[0] * decoding_activations(version, size, compute_bytes)


def text_activations(cfg: T5Config, compute_bytes: int) -> int:
    return 2 * TEXT_TOKENS * (2 * cfg.d_ff * compute_bytes + T5_STREAM * cfg.d_model * 4)


def wan_memory_phases(variant, files: BundleFiles | None, weights: dict[str, int], size: Size, load: LoadRequest,
                      low_memory: bool) -> list[Phase]:
    """Text encoding, sampling and decoding of one Wan run (registry hook `memory`)."""
    cb = load.dtype.itemsize
    experts = [("DiT", weights[r]) for r in ("dit", "dit_high", "dit_low") if weights.get(r)]
    if len(experts) == 2:
        experts = [("DiT high", experts[0][1]), ("DiT low", experts[1][1])]
    kept = [*experts, ("VAE", weights.get("vae", 0))]
    if weights.get("clip_vision"):
        kept.append(("CLIP vision", weights["clip_vision"]))
    text_encoder = ("text encoder", weights.get("text_encoder", 0))
    after_text = kept if low_memory else [*kept, text_encoder]
    guidance_batch = 2 if variant.guidance != 1.0 else 1
    return [
        Phase("text encoding", tuple([*kept, text_encoder]), text_activations(t5_config(files), cb)),
        Phase("sampling", tuple(after_text),
              sampling_activations(dit_config(variant, files), dit_tokens(variant, size), cb, guidance_batch)),
        Phase("decoding", tuple(after_text), decoding_activations(variant.vae, size, cb)),
    ]
