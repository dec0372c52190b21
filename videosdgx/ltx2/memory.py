"""LTX-2's memory formula for the plan (`videosdgx.plan`): what each phase holds and its activation peak.

The phases follow `LTX2Pipeline`: every model is loaded first (the checkpoint's DiT, text projection, video VAE,
audio VAE and vocoder, Gemma, the x2 upsampler and a dev model's distilled LoRA); Gemma is released after
encoding with `--low-memory`, which also runs the guidance passes one by one. (The pipeline also releases Gemma
on its own when the files take over 80 % of free memory; the plan counts Gemma resident unless `--low-memory`, so
such a run is told to pass it.) Two-stage variants sample at half size, upsample the latents x2 and refine at
full size without guidance ("stage-2 sampling"). Activation peaks, in bytes, `cb` the compute dtype's size:

* text encoding: `prompts * 1024 tokens * ((layers + 1) * hidden * cb * (1 + projections) + 2 * ffn * cb
  + TEXT_STREAM * hidden * 4)`: Gemma keeps every hidden state, the projection stacks them once per modality it
  projects (19B: one shared, 2.3 / 2.5: two), one layer's MLP and float32 stream are alive on top.
* sampling: per guidance pass in the batch, each video token holds the feed-forward's `[tokens, 4 dim]`
  intermediates (`2 * 4 * dim * cb`) and about `DIT_STREAM` float32 rows of `dim` (residual stream, norms,
  modulated inputs, RoPE tables); audio tokens likewise at the audio width. With an image the timesteps are per
  token, and `rows + 5` float32 AdaLN rows of `dim` per video token stay alive for the whole forward (`rows` = 6,
  or 9 for 2.3): the plan counts them (a run without `--image` needs less).
* upsampling: `UPSAMPLER_PER_VOXEL * mid_channels * cb` per latent voxel of the stage-1 latents.
* decoding: the video VAE decodes a stream of frames (`decode_chunks`), so its working set follows one frame's
  pixels: `height * width * VAE_PER_PIXEL * cb`, plus the float32 frames (kept, then concatenated). The audio VAE
  and vocoder run after it on a few seconds of sound (tens of MB: not counted).

The constants were measured on CPU in float32 with bench/plan_ltx2.py (LTX-2 19B widths, one DiT block, one Gemma
layer; bench/README.md has the table). Without installed files the checkpoint is split into the DiT (parameters
of the released architecture) and the rest (the manifest size minus the DiT).
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.ltx2.config import LTX2Config, config_from_metadata
from videosdgx.ltx2.keys import DIT_PREFIX, TEXT_SIDE
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

TEXT_STREAM = 8
DIT_STREAM = 8
UPSAMPLER_PER_VOXEL = 8
VAE_PER_PIXEL = 2000
AUDIO_LATENTS_PER_SECOND = 25  # 16 kHz mel / hop 160 / audio VAE stride 4
VAE_SPATIAL, VAE_TEMPORAL = 32, 8


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
        kept = [(label, weights[role]) for role, label in (("dit", "DiT"), ("vae", "video VAE"),
                                                           ("audio_vae", "audio VAE + vocoder"),
                                                           ("duration_head", "duration head")) if weights.get(role)]
    if variant.two_stage and weights.get("upsampler"):
        kept.append(("upsampler", weights["upsampler"]))
        if not variant.distilled and weights.get("lora"):
            kept.append(("distilled LoRA", weights["lora"]))
    return kept, ("Gemma", weights.get("text_encoder", 0))


# ------------------------------------------------------------------------------------------------ activations
def gemma_config(files: BundleFiles | None) -> Gemma3Config:
    """Gemma's widths: the installed Gemma 3 file's layer count and width, else Gemma 3 12B's (LTX-2.5's Gemma 4
    12B is planned with the same widths)."""
    path = files.optional("text_encoder") if files is not None else None
    if path is None:
        return Gemma3Config()
    try:
        header = read_gemma3_header(files.all("text_encoder") if len(files.all("text_encoder")) > 1 else path)
    except Exception:  # noqa: BLE001 - a Gemma 4 file (LTX-2.5): plan with Gemma 3 12B's widths
        return Gemma3Config()
    with open_checkpoint(path) as checkpoint:
        ffn = next((checkpoint.info(k).shape[0] for k in checkpoint.keys() if k.endswith("mlp.gate_proj.weight")),
                   Gemma3Config().intermediate)
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
    return ((frames - 1) // VAE_TEMPORAL + 1) * (height // VAE_SPATIAL) * (width // VAE_SPATIAL)


def audio_tokens(frames: int, fps: float) -> int:
    return round(frames / fps * AUDIO_LATENTS_PER_SECOND)


def text_activations(gemma: Gemma3Config, prompts: int, projections: int, cb: int) -> int:
    per_token = ((gemma.layers + 1) * gemma.hidden * cb * (1 + projections) + 2 * gemma.intermediate * cb
                 + TEXT_STREAM * gemma.hidden * 4)
    return prompts * LTX_MAX_TOKENS * per_token


def sampling_activations(cfg: LTX2Config, video: int, audio: int, batch: int, cb: int, image: bool = True) -> int:
    def stream(dim: int) -> int:
        return 2 * 4 * dim * cb + DIT_STREAM * dim * 4

    tables = (cfg.modulation_rows + 5) * cfg.dim * 4 if image else 0
    return batch * (video * (stream(cfg.dim) + tables) + audio * stream(cfg.audio_dim))


def upsampling_activations(cfg: UpsamplerConfig, size: Size, cb: int) -> int:
    voxels = latent_tokens(size.width, size.height, size.frames)
    return voxels * cfg.mid_channels * cb * UPSAMPLER_PER_VOXEL


def decoding_activations(size: Size, cb: int) -> int:
    frames_out = size.frames * size.height * size.width * 3 * 4 * 2  # decoded frames, then their concatenation
    return size.height * size.width * VAE_PER_PIXEL * cb + frames_out


def ltx2_memory_phases(variant: LTX2Variant, files: BundleFiles | None, weights: dict[str, int], size: Size,
                       load: LoadRequest, low_memory: bool) -> list[Phase]:
    """Text encoding, sampling (two-stage: upsampling and stage-2 sampling) and decoding of one LTX-2 run
    (registry hook `memory`)."""
    cb = load.dtype.itemsize
    kept, gemma = resident_models(variant, files, weights, load)
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
    phases = [
        Phase("text encoding", tuple([*kept, gemma]), text_activations(gemma_config(files), prompts, projections, cb)),
        Phase("sampling", after_text, sampling_activations(
            cfg, latent_tokens(stage1.width, stage1.height, stage1.frames), sound, batch, cb)),
    ]
    if two_stage:
        phases.append(Phase("upsampling", after_text, upsampling_activations(upsampler_config(files), stage1, cb)))
        phases.append(Phase("stage-2 sampling", after_text, sampling_activations(
            cfg, latent_tokens(size.width, size.height, size.frames), sound, 1, cb)))
    phases.append(Phase("decoding", after_text, decoding_activations(size, cb)))
    return phases
