"""SkyReels V3's memory formula for the plan (`videosdgx.plan`): Wan's (`videosdgx.wan.memory`) with the tokens
each task adds.

SkyReels V3 runs Wan 2.1 14B-wide DiTs with the Wan 2.1 VAE and UMT5, so the DiT, text and VAE activations are
Wan's formulas; only the token counts differ:

* R2V: the reference latents follow the noisy ones in time (one latent frame per reference, up to 4: the plan
  counts 4). Guidance passes run one by one (batch 1).
* V2V: single-shot extension denoises 5-second chunks after 7 latent frames of the input (prefix + chunk padded
  to a multiple of 8 latent frames) and decodes prefix + chunk; shot switching puts up to 9 context latent frames
  after at most 5 s of new ones (fewer tokens) but loads the shot DiT on first use, which the plan counts
  resident (a run that only extends holds one DiT).
* A2V: 81-frame clips (the clip length is the variant's `frames`) with the I2V conditioning in channels (no extra
  tokens); text, audio and unconditional passes run one by one. CLIP vision and the wav2vec2 audio encoder stay
  loaded; their activations (one image, the speech features) are not counted.

UMT5 is loaded to encode the prompts and freed right after with `--low-memory`, as in Wan. DiT files whose size
the manifest does not know count the parameters of the released architecture at the compute dtype.
"""

from __future__ import annotations

import functools
import math

import torch

from videosdgx.bundle_files import BundleFiles
from videosdgx.plan import Phase, Size
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.skyreels_v3.avatar import AvatarConfig, AvatarModel
from videosdgx.skyreels_v3.v2v import CONDITION_FRAMES, chunk_latent_frames
from videosdgx.skyreels_v3.variants import (EXTENSION_CHUNK_SECONDS, MAX_REFERENCES, SkyReelsVariant,
                                          skyreels_variant)
from videosdgx.wan.memory import TEMPORAL_FACTOR, decoding_activations
from videosdgx.wan.memory import dit_config as wan_dit_config
from videosdgx.wan.memory import latent_tokens, sampling_activations, t5_config, text_activations
from videosdgx.wan.transformer import WAN_PRESETS, WanConfig, WanModel

SPATIAL_FACTOR = 8  # Wan 2.1 VAE
TASK_VARIANTS = {"r2v": "skyreels-v3-r2v-14b", "v2v": "skyreels-v3-v2v-14b", "a2v": "skyreels-v3-a2v-19b"}


def dit_config(variant: SkyReelsVariant, files: BundleFiles | None) -> WanConfig:
    """Widths of the task's DiT (Wan 2.1 14B; the avatar DiT is the 14B I2V one with audio layers on top)."""
    if files is not None and variant.task != "a2v" and files.all("dit"):
        return wan_dit_config(variant, files)
    return WAN_PRESETS["wan2.1-i2v-14b" if variant.task == "a2v" else "wan2.1-t2v-14b"]


def extension_latent_frames(variant: SkyReelsVariant, size: Size) -> int:
    """Latent frames of the largest single-shot extension chunk: the input's prefix + the new frames."""
    prefix = (CONDITION_FRAMES - 1) // TEMPORAL_FACTOR + 1
    seconds = min(EXTENSION_CHUNK_SECONDS, max(1, math.ceil(size.frames / variant.fps)))
    return prefix + max(chunk_latent_frames(seconds, prefix))


def task_tokens(variant: SkyReelsVariant, size: Size) -> tuple[int, Size]:
    """(DiT tokens of one forward, the video one decode makes) for the variant's task at `size`."""
    h, w = size.height // SPATIAL_FACTOR, size.width // SPATIAL_FACTOR
    if variant.task == "r2v":
        latent = (size.frames - 1) // TEMPORAL_FACTOR + 1 + MAX_REFERENCES
        return latent_tokens((latent, h, w)), size
    if variant.task == "v2v":
        latent = extension_latent_frames(variant, size)
        return latent_tokens((latent, h, w)), Size(size.width, size.height, (latent - 1) * TEMPORAL_FACTOR + 1)
    return latent_tokens(((size.frames - 1) // TEMPORAL_FACTOR + 1, h, w)), size



def task_sampling_activations(task: str, cfg: WanConfig, size: Size, cb: int) -> int:
    """The DiT's sampling peak of one SkyReels V3 task at `size` (the sampler nodes' check before they run)."""
    tokens, _ = task_tokens(skyreels_variant(TASK_VARIANTS[task]), size)
    return sampling_activations(cfg, tokens, cb, batch=1)

@functools.cache
def released_dit_parameters(task: str) -> int:
    """Parameters of the task's released DiT, counted on a meta-device build (for manifest entries without a
    size)."""
    with torch.device("meta"):
        if task == "a2v":
            model = AvatarModel(AvatarConfig(WAN_PRESETS["wan2.1-i2v-14b"]))
        else:
            model = WanModel(WAN_PRESETS["wan2.1-t2v-14b"])
        return sum(p.numel() for p in model.parameters())


def skyreels_memory_phases(variant: SkyReelsVariant, files: BundleFiles | None, weights: dict[str, int],
                           size: Size, load: LoadRequest, low_memory: bool) -> list[Phase]:
    """Text encoding, sampling and decoding of one SkyReels V3 run (registry hook `memory`)."""
    cb = load.dtype.itemsize
    names = {"dit": "DiT", "dit_shot": "shot DiT", "vae": "VAE", "clip_vision": "CLIP vision",
             "audio_encoder": "wav2vec2"}
    weights = dict(weights)
    for role in ("dit", "dit_shot"):
        if role in weights and not weights[role] and (files is None or not files.all(role)):
            weights[role] = released_dit_parameters(variant.task) * cb  # the manifest does not know its size
    kept = [(label, weights[role]) for role, label in names.items() if weights.get(role)]
    text_encoder = ("text encoder", weights.get("text_encoder", 0))
    after_text = tuple(kept if low_memory else [*kept, text_encoder])
    tokens, decoded = task_tokens(variant, size)
    return [
        Phase("text encoding", tuple([*kept, text_encoder]), text_activations(t5_config(files), cb)),
        Phase("sampling", after_text, sampling_activations(dit_config(variant, files), tokens, cb, batch=1)),
        Phase("decoding", after_text, decoding_activations("2.1", decoded, cb)),
    ]
