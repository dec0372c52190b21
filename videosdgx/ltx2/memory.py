"""LTX-2's memory formula for the plan (`videosdgx.plan`): what each phase holds and its activation peak.

The phases follow `LTX2Pipeline`: every model is loaded first (the checkpoint's DiT, text projection, video VAE,
audio VAE and vocoder, Gemma, the x2 upsampler and a dev model's distilled LoRA); Gemma is released after
encoding with `--low-memory`, which also runs the guidance passes one by one. (The pipeline also releases Gemma
on its own when the files take over 80 % of free memory; the plan counts Gemma resident unless `--low-memory`, so
such a run is told to pass it.) Two-stage variants (19B, 2.5) sample at half size, upsample the latents x2 and
refine at full size without guidance ("stage-2 sampling"). LTX-2.5's temporal upscaler is counted resident; the
round it runs with `--option temporal_upscale=true` (2n - 1 frames at full size, one pass) is not planned.
Activation peaks, in bytes, `cb` the compute dtype's size:

* text encoding: `prompts * 1024 tokens * ((layers + 1) * hidden * cb * (1 + projections) + 2 * ffn * cb
  + TEXT_STREAM * hidden * 4)`: Gemma keeps every hidden state, the projection stacks them once per modality it
  projects (19B: one shared, 2.3 / 2.5: two), one layer's MLP and float32 stream are alive on top.
* sampling: per guidance pass in the batch, each video token holds the feed-forward's `[tokens, 4 dim]`
  intermediates (`2 * 4 * dim * cb`) and `DIT_STREAM` float32 rows of `dim` (residual stream, norms, modulated
  inputs, RoPE tables); audio tokens likewise at the audio width; the text contexts add `TEXT_CONTEXT_ROWS` rows
  of both widths per text token. With an image the timesteps are per token: `rows + IMAGE_ROWS` more float32
  rows per video token (`rows` = 6, or 9 for 2.3; the AdaLN tables stay alive for the whole forward, each block
  expands some per token). Every LTX-2 variant takes an image, so the plan counts them (a run without `--image`
  needs less); an end image appends one latent frame's tokens (conditioning.py), also counted. Each stage first
  encodes the start image (`ENCODE_PER_PIXEL` values per pixel): the phase's peak is the larger of the two.
* upsampling: `UPSAMPLER_PER_VOXEL * mid_channels * cb` per latent voxel of the stage-1 latents.
* decoding: `decode_chunks` streams the video: its last stage (128 channels at a quarter of the sides, 8 values
  per pixel) takes the whole clip, or at least one latent frame's 8 frames, or as many as fit its `DECODE_BUDGET`
  elements; about `DECODE_COPIES` such inputs are alive; plus the float32 frames (kept, then concatenated). The
  audio VAE and vocoder run after it on a few seconds of sound (tens of MB: not counted).
* diffusion decoding (LTX-2.5's default when the bundle has the diffusion video VAE): tiled (diffusion_tiling.py),
  planned at its smallest tiles, since the tiles grow only into memory that is free. The whole clip's starting
  noise is alive throughout; on top of it the larger of stages 1-3 on the whole clip (`FEATURE_COPIES` of the
  stage-4 input they make) and, after them, that input + a temporal group's blend buffer + one tile's stage 4 and
  diffusion steps (`TILE_VALUES_PER_TOKEN` stage-5 widths per stage-5 token) + the float32 frames so far; at the
  end the frames and their concatenation. The decoder's widths come from the file's header (ltx-core's defaults
  without one).
* on the CPU only: oneDNN holds a reordered copy of a convolution's weight while the convolution runs (measured:
  +0.45 GB for a float32 2048 x 2048 x 27 weight on a 3 x 8 x 12 input, nothing on tiny inputs); the image
  encoding, upsampling and decoding phases hold at least their part's largest convolution weight.

The constants were measured on CPU in float32 (bench/plan_ltx2.py at LTX-2 19B widths with one DiT block, one Gemma
layer and one connector layer; a one-block DiT forward at 64-2048 tokens with and without an image: 227 KB per
token without, 546 KB with, at dim 4096; bench/README.md has the tables). Without installed files the checkpoint
is split into the DiT (parameters of the released architecture) and the rest (the manifest size minus the DiT).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.ltx2 import diffusion_decoder_files as decoder_files
from videosdgx.ltx2 import diffusion_tiling as tiling
from videosdgx.ltx2.config import LTX2Config, config_from_metadata
from videosdgx.ltx2.diffusion_decoder import DiffusionDecoderConfig
from videosdgx.ltx2.keys import DIT_PREFIX, TEXT_SIDE
from videosdgx.ltx2.media_loaders import header
from videosdgx.ltx2.pipeline import AUDIO_LATENTS_PER_SECOND, VAE_STRIDE
from videosdgx.ltx2.sampler import Guidance
from videosdgx.ltx2.transformer import LTX2Model
from videosdgx.ltx2.upsampler import UpsamplerConfig
from videosdgx.ltx2.variants import LTX2Variant
from videosdgx.plan import Phase, Size, stored_weight_bytes
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.text.gemma3 import Gemma3Config
from videosdgx.text.gemma3_files import read_gemma3_header
from videosdgx.text.gemma3_tokenizer import LTX_MAX_TOKENS
from videosdgx.text.gemma4_files import config_from_shapes as gemma4_config
from videosdgx.text.gemma4_files import gemma4_key_map

TEXT_STREAM = 8
DIT_STREAM = 6
IMAGE_ROWS = 14
TEXT_CONTEXT_ROWS = 2
ENCODE_PER_PIXEL = 40
UPSAMPLER_PER_VOXEL = 8
LAST_STAGE_VALUES = 8  # the last decoder stage: 128 channels at a quarter of the sides (patch 4)
DECODE_BUDGET = 2**25  # `LTX2VideoVAE.decode_chunks`' budget (elements of one step's input)
DECODE_COPIES = 9.5
RELEASED_LARGEST_CONV = 1024 * 4096 * 27  # the 19B decoder's first depth-to-space convolution
VAE_TEMPORAL = 8  # pixel frames per latent frame (after the first)


# ------------------------------------------------------------------------------------------------ weights
def _part(key: str) -> str:
    """Which loaded model a tensor of an LTX-2 single-file checkpoint belongs to."""
    if key.startswith(DIT_PREFIX):
        return "text projection" if key[len(DIT_PREFIX):].startswith(TEXT_SIDE) else "DiT"
    if key.startswith("text_embedding_projection."):
        return "text projection"
    if ".per_channel_statistics." in key and key.rpartition(".")[2] not in ("mean-of-means", "std-of-means"):
        return "unused"  # statistics the release carries and the loaders skip
    if key.startswith("vae."):
        return "video VAE"
    if key.startswith("audio_vae.encoder."):
        return "unused"  # the pipeline loads the audio decoder only
    if key.startswith(("audio_vae.", "vocoder.")):
        return "audio VAE + vocoder"
    return "unused"


def checkpoint_parts(files: BundleFiles, load: LoadRequest) -> dict[str, int]:
    """Loaded bytes of each model of the installed single-file checkpoint, from its header (the vocoder in
    float32, `weight_format` applied to the DiT only)."""
    path = files.all("checkpoint")
    media = dataclasses.replace(load, weight_format="default")
    parts = {}
    for name in ("DiT", "text projection", "video VAE", "audio VAE + vocoder"):
        request = load if name == "DiT" else media
        if name == "audio VAE + vocoder":
            vocoder = stored_weight_bytes(path, dataclasses.replace(media, dtype=torch.float32),
                                          lambda key: key.startswith("vocoder."))
            parts[name] = vocoder + stored_weight_bytes(
                path, media, lambda key: _part(key) == name and not key.startswith("vocoder."))
        else:
            parts[name] = stored_weight_bytes(path, request, lambda key, name=name: _part(key) == name)
    return parts


@functools.cache
def released_dit_parameters(version: str) -> int:
    """Parameters of the released DiT of `version` (19B or 2.3), counted on a meta-device build."""
    cfg = LTX2Config()
    if version == "2.3":
        cfg = dataclasses.replace(cfg, gated_attention=True, cross_attention_adaln=True, caption_channels=None)
    with torch.device("meta"):
        return sum(p.numel() for p in LTX2Model(cfg).parameters())


def manifest_checkpoint_parts(variant: LTX2Variant, loaded: int, load: LoadRequest) -> dict[str, int]:
    """The checkpoint's loaded bytes (from the manifest size): a full-precision DiT (the file is larger than the
    released DiT at the compute dtype) is split from the rest, so that fp8 at load applies to it alone; a
    quantised file stays one item."""
    params = released_dit_parameters(variant.version)
    full = params * load.dtype.itemsize
    if loaded < full:
        return {"checkpoint": loaded}
    dit = params if load.weight_format != "default" else full
    return {"DiT": dit, "VAEs, vocoder, text projection": loaded - full}


def resident_models(variant: LTX2Variant, files: BundleFiles | None, weights: dict[str, int],
                    load: LoadRequest) -> tuple[list[tuple[str, int]], tuple[str, int]]:
    """(models that stay loaded, Gemma) as (name, bytes)."""
    if "checkpoint" in weights:
        if files is not None and files.all("checkpoint"):
            parts = checkpoint_parts(files, load)
        else:
            parts = manifest_checkpoint_parts(variant, weights["checkpoint"], load)
        kept = [(name, size) for name, size in parts.items() if size]
    else:  # LTX-2.5: split files
        labels = (("dit", "DiT"), ("vae", "video VAE"), ("video_decoder", "diffusion video decoder"),
                  ("audio_vae", "audio VAE + vocoder"), ("duration_head", "duration head"),
                  ("temporal_upsampler", "temporal upscaler"))
        kept = [(label, weights[role]) for role, label in labels if weights.get(role)]
    if variant.two_stage and weights.get("upsampler"):
        kept.append(("upsampler", weights["upsampler"]))
        if not variant.distilled and weights.get("lora"):
            kept.append(("distilled LoRA", weights["lora"]))
    return kept, ("Gemma", weights.get("text_encoder", 0))


# ------------------------------------------------------------------------------------------------ activations
def gemma_config(variant: LTX2Variant, files: BundleFiles | None) -> Gemma3Config:
    """Gemma's widths: the installed Gemma 3 (LTX-2.5: Gemma 4) file's layer count and widths, else Gemma 3 12B's
    (LTX-2.5's Gemma 4 12B is planned with the same widths)."""
    paths = files.all("text_encoder") if files is not None else ()
    if not paths:
        return Gemma3Config()
    if variant.version == "2.5":
        with open_checkpoint(paths[0]) as checkpoint:
            names = gemma4_key_map(checkpoint.keys(), checkpoint.name)
            gemma4 = gemma4_config({name: checkpoint.info(key).shape for key, name in names.items()})
        return dataclasses.replace(Gemma3Config(), hidden=gemma4.hidden, layers=gemma4.layers,
                                   intermediate=gemma4.intermediate)
    header = read_gemma3_header(list(paths) if len(paths) > 1 else paths[0])
    ffn = Gemma3Config().intermediate
    with open_checkpoint(paths[0]) as checkpoint:
        ffn = next((checkpoint.info(k).shape[0] for k in checkpoint.keys() if k.endswith("mlp.gate_proj.weight")),
                   ffn)
    return dataclasses.replace(Gemma3Config(), hidden=header.hidden, layers=header.layers, intermediate=ffn)


def dit_config(variant: LTX2Variant, files: BundleFiles | None) -> LTX2Config:
    paths = (files.all("checkpoint") or files.all("dit")) if files is not None else ()
    if paths:
        with open_checkpoint(paths[0]) as checkpoint:
            return config_from_metadata(checkpoint.metadata, checkpoint.name)
    if variant.version == "19B":
        return LTX2Config()
    return dataclasses.replace(LTX2Config(), gated_attention=True, cross_attention_adaln=True, caption_channels=None)


def upsampler_config(files: BundleFiles | None) -> UpsamplerConfig:
    path = files.optional("upsampler") if files is not None else None
    if path is None:
        return UpsamplerConfig()
    with open_checkpoint(path) as checkpoint:
        return UpsamplerConfig(mid_channels=checkpoint.info("initial_conv.weight").shape[0])


def latent_tokens(width: int, height: int, frames: int) -> int:
    """Video DiT tokens (patch 1) of a `width` x `height`, `frames` video."""
    return ((frames - 1) // VAE_TEMPORAL + 1) * (height // VAE_STRIDE) * (width // VAE_STRIDE)


def audio_tokens(frames: int, fps: float) -> int:
    return round(frames / fps * AUDIO_LATENTS_PER_SECOND)


def text_activations(gemma: Gemma3Config, prompts: int, projections: int, cb: int) -> int:
    per_token = ((gemma.layers + 1) * gemma.hidden * cb * (1 + projections) + 2 * gemma.intermediate * cb
                 + TEXT_STREAM * gemma.hidden * 4)
    return prompts * LTX_MAX_TOKENS * per_token


def sampling_activations(cfg: LTX2Config, video: int, audio: int, batch: int, cb: int, image: bool = True) -> int:
    def stream(dim: int) -> int:
        return 2 * 4 * dim * cb + DIT_STREAM * dim * 4

    tables = (cfg.modulation_rows + IMAGE_ROWS) * cfg.dim * 4 if image else 0
    text = TEXT_CONTEXT_ROWS * LTX_MAX_TOKENS * (cfg.dim + cfg.audio_dim) * 4
    return batch * (video * (stream(cfg.dim) + tables) + audio * stream(cfg.audio_dim) + text)


def keyframe_tokens(width: int, height: int, keyframes: int = 1) -> int:
    """Tokens appended for `keyframes` images at frames other than the first (one latent frame each)."""
    return keyframes * latent_tokens(width, height, 1)


def request_sampling_activations(cfg: LTX2Config, size: Size, fps: float, passes: int, two_stage: bool, image: bool,
                                 cb: int, keyframes: int = 0) -> int:
    """The DiT's peak over the stages of one request (the sampler node's check): stage 1 with its guidance passes
    batched (at half size when two-stage), stage 2 alone at full size; `keyframes`: images appended as tokens (an
    end image)."""
    sound = audio_tokens(size.frames, fps)
    first = Size(size.width // 2, size.height // 2, size.frames) if two_stage else size

    def tokens(s: Size) -> int:
        return latent_tokens(s.width, s.height, s.frames) + keyframe_tokens(s.width, s.height, keyframes)

    peak = sampling_activations(cfg, tokens(first), sound, passes, cb, image or keyframes > 0)
    if two_stage:
        peak = max(peak, sampling_activations(cfg, tokens(size), sound, 1, cb, image or keyframes > 0))
    return peak


def largest_conv(paths: tuple, prefix: str, cb: int, released: int = RELEASED_LARGEST_CONV) -> int:
    """Bytes of the largest convolution weight under `prefix` in `paths` (`released` parameters without files),
    at the compute dtype. On the CPU, oneDNN holds a reordered copy of a convolution's weight while it runs."""
    if not paths:
        return released * cb
    largest = 0
    with open_checkpoint(paths[0]) as checkpoint:
        for key in checkpoint.keys():
            shape = checkpoint.info(key).shape
            if key.startswith(prefix) and key.endswith(".weight") and len(shape) == 5:
                largest = max(largest, math.prod(shape))
    return largest * cb


def _vae_paths(files: BundleFiles | None) -> tuple:
    return (files.all("checkpoint") or files.all("vae")) if files is not None else ()


def _vae_prefix(files: BundleFiles | None, part: str) -> str:
    return f"vae.{part}." if files is not None and files.all("checkpoint") else f"{part}."


def image_encoding_activations(files: BundleFiles | None, size: Size, load: LoadRequest) -> int:
    """Encoding the start image (at the stage's size, before the stage's denoising)."""
    cb = load.dtype.itemsize
    reorder = largest_conv(_vae_paths(files), _vae_prefix(files, "encoder"), cb) if load.device.type == "cpu" else 0
    return max(reorder, size.height * size.width * ENCODE_PER_PIXEL * cb)


def upsampling_activations(files: BundleFiles | None, size: Size, load: LoadRequest) -> int:
    """The x2 latent upsampler on the stage-1 latents (`size`: stage 1's)."""
    cb = load.dtype.itemsize
    voxels = latent_tokens(size.width, size.height, size.frames)
    mid = upsampler_config(files).mid_channels
    paths = files.all("upsampler") if files is not None else ()
    reorder = largest_conv(paths, "", cb, mid * 4 * mid * 27) if load.device.type == "cpu" else 0
    return max(reorder, voxels * mid * cb * UPSAMPLER_PER_VOXEL)


def decoding_activations(files: BundleFiles | None, size: Size, load: LoadRequest) -> int:
    """The streamed video decode: the last decoder stage's input in flight (whole clip, or at least one latent
    frame's 8 frames, or as many as fit `DECODE_BUDGET` elements), plus the float32 frames."""
    cb = load.dtype.itemsize
    frame = LAST_STAGE_VALUES * size.height * size.width
    in_flight = min(size.frames * frame, max(VAE_TEMPORAL * frame, DECODE_BUDGET))
    reorder = largest_conv(_vae_paths(files), _vae_prefix(files, "decoder"), cb) if load.device.type == "cpu" else 0
    frames_out = size.frames * size.height * size.width * 3 * 4 * 2  # decoded frames, then their concatenation
    return max(reorder, in_flight * DECODE_COPIES * cb) + frames_out


def diffusion_decoder_config(files: BundleFiles | None) -> DiffusionDecoderConfig:
    """The installed diffusion decoder's config from its header (names, shapes, `vae` config), else ltx-core's
    class defaults."""
    path = files.optional("video_decoder") if files is not None else None
    if path is None:
        return DiffusionDecoderConfig()
    with open_checkpoint(path) as checkpoint:
        keys = checkpoint.keys()
        if decoder_files.is_diffusers(keys):
            shapes = {name: checkpoint.info(key).shape for key in keys if (name := decoder_files.diffusers_key(key))}
            return decoder_files.config_from_files(shapes, None, decoder_files.read_config_json(checkpoint))
        prefix = decoder_files.raw_prefix(keys)
        shapes = {key[len(prefix):].replace("t_embedder.mlp.0.", "t_embedder.timestep_embedder.linear_1."):
                  checkpoint.info(key).shape for key in keys if key.startswith(prefix)}
        return decoder_files.config_from_files(shapes, header(checkpoint, "vae"), None)


def diffusion_decoding_activations(files: BundleFiles | None, size: Size, load: LoadRequest) -> int:
    """The tiled diffusion decode at its smallest tiles, the decoder's widths from its file."""
    cfg = diffusion_decoder_config(files)
    frames, pixels = tiling.smallest_tiles(cfg)
    return diffusion_decode_bytes(cfg, size, load.dtype.itemsize, tiling.TileSizes(frames, pixels, pixels))


def diffusion_decode_bytes(cfg: DiffusionDecoderConfig, size: Size, cb: int, tiles: tiling.TileSizes) -> int:
    """A diffusion decode in `tiles` (see the module docstring): the clip's noise throughout; stages 1-3, then the
    stage-4 input + one tile + the frames so far, then the frames and their concatenation."""
    latent = ((size.frames - 1) // cfg.temporal_factor + 1, size.height // cfg.spatial_factor,
              size.width // cfg.spatial_factor)
    stages, tile = tiling.decode_phases(cfg, latent, tiles, cb)
    pixels = size.frames * size.height * size.width
    noise, out = pixels * cfg.out_channels * cb, pixels * 3 * 4
    return max(stages + noise, tile + noise + out, 2 * out)


def ltx2_memory_phases(variant: LTX2Variant, files: BundleFiles | None, weights: dict[str, int], size: Size,
                       load: LoadRequest, low_memory: bool) -> list[Phase]:
    """Text encoding, sampling (two-stage: upsampling and stage-2 sampling) and decoding of one LTX-2 run
    (registry hook `memory`)."""
    cb = load.dtype.itemsize
    kept, gemma = resident_models(variant, files, weights, load)
    image = "image" in variant.inputs
    keyframes = int("end_image" in variant.inputs)
    after_text = tuple(kept if low_memory else [*kept, gemma])
    cfg = dit_config(variant, files)
    passes = Guidance().passes() if variant.distilled else Guidance(
        variant.video_guidance, variant.audio_guidance, (variant.stg_block,)).passes()
    prompts = 2 if "uncond" in passes else 1
    batch = 1 if low_memory else len(passes)
    projections = 2 if cfg.version != "19B" else 1
    two_stage = variant.two_stage and bool(weights.get("upsampler"))
    stage1 = Size(size.width // 2, size.height // 2, size.frames) if two_stage else size
    sound = audio_tokens(size.frames, variant.fps)
    def stage(stage_size: Size, stage_batch: int) -> int:
        """A sampling stage's peak: encoding the start image, then denoising."""
        tokens = latent_tokens(stage_size.width, stage_size.height, stage_size.frames) + \
            keyframe_tokens(stage_size.width, stage_size.height, keyframes)
        encode = image_encoding_activations(files, stage_size, load) if image else 0
        return max(encode, sampling_activations(cfg, tokens, sound, stage_batch, cb, image))

    text = text_activations(gemma_config(variant, files), prompts, projections, cb)
    phases = [Phase("text encoding", tuple([*kept, gemma]), text), Phase("sampling", after_text, stage(stage1, batch))]
    if two_stage:
        phases.append(Phase("upsampling", after_text, upsampling_activations(files, stage1, load)))
        phases.append(Phase("stage-2 sampling", after_text, stage(size, 1)))
    diffusion = variant.video_decoders[:1] == ("diffusion",) and "video_decoder" in weights  # the bundle has it
    decode = diffusion_decoding_activations if diffusion else decoding_activations
    phases.append(Phase("decoding", after_text, decode(files, size, load)))
    return phases
