"""Key names of the LTX-2 media models (video VAE, audio VAE, vocoder, latent upsampler) in every layout.

Our modules use the official (ltx-core) names with the component prefix removed; only the latent statistics
are renamed (`per_channel_statistics.mean-of-means` / `std-of-means` -> `latents_mean` / `latents_std`).
Layouts read:
* official single file / Kijai / Comfy-Org split files: `vae.*` (or bare `encoder.*`, `decoder.*`,
  `per_channel_statistics.*`), `audio_vae.*`, `vocoder.*`; the upsampler file has no prefix;
* diffusers (`AutoencoderKLLTX2Video`, `AutoencoderKLLTX2Audio`, `LTX2Vocoder(WithBWE)`): `diffusers_*` below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

KeyMap = Callable[[str], "str | None"]
STATS = {"per_channel_statistics.mean-of-means": "latents_mean", "per_channel_statistics.std-of-means": "latents_std"}
IGNORED_STATS = ("per_channel_statistics.channel", "per_channel_statistics.mean-of-stds")  # and ..._over_std-of-means


def _stats(key: str) -> str | None:
    if key.startswith(IGNORED_STATS):
        return None
    return STATS.get(key, key)


def video_vae_key_map(keys: Iterable[str]) -> KeyMap:
    """Module name of each key of a file holding the video VAE (single file, `vae.*` or bare split file, or
    diffusers); keys of other components map to None."""
    keys = list(keys)
    if "decoder.mid_block.resnets.0.conv1.conv.weight" in keys:
        return diffusers_video_vae_map(keys).get
    prefix = "vae." if any(k.startswith("vae.") for k in keys) else ""

    def key_map(key: str) -> str | None:
        if not key.startswith(prefix):
            return None
        key = key[len(prefix) :]
        return _stats(key) if key.startswith(("encoder.", "decoder.", "per_channel_statistics.")) else None

    return key_map


def audio_vae_key_map(parts: tuple[str, ...] = ("encoder", "decoder")) -> KeyMap:
    """`audio_vae.{encoder,decoder,per_channel_statistics}.*` (single file or Kijai split) -> module names."""
    wanted = tuple(f"audio_vae.{part}." for part in parts) + ("audio_vae.per_channel_statistics.",)

    def key_map(key: str) -> str | None:
        return _stats(key.removeprefix("audio_vae.")) if key.startswith(wanted) else None

    return key_map


def vocoder_key_map(key: str) -> str | None:
    """`vocoder.*` -> module names (the first `vocoder.` only: 2.3 nests `vocoder.vocoder.*`); the STFT's
    inverse basis is not used."""
    if not key.startswith("vocoder.") or key.endswith("stft_fn.inverse_basis"):
        return None
    return key.removeprefix("vocoder.")


# ------------------------------------------------------------------------------------------- diffusers
def _count(keys: Iterable[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for key in keys if (m := pattern.match(key))})


def _diffusers_video_vae_key(key: str, down_blocks: int) -> str:
    rules = (
        (r"encoder\.down_blocks\.(\d+)\.resnets\.", lambda m: f"encoder.down_blocks.{2 * int(m[1])}.res_blocks."),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", lambda m: f"encoder.down_blocks.{2 * int(m[1]) + 1}."),
        (r"encoder\.mid_block\.resnets\.", lambda m: f"encoder.down_blocks.{2 * down_blocks}.res_blocks."),
        (r"decoder\.mid_block\.resnets\.", lambda m: "decoder.up_blocks.0.res_blocks."),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up_blocks.{2 * int(m[1]) + 1}."),
        (r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up_blocks.{2 * int(m[1]) + 2}.res_blocks."),
    )
    for pattern, target in rules:
        match = re.match(pattern, key)
        if match:
            return target(match) + key[match.end() :]
    return key


def diffusers_video_vae_map(keys: Iterable[str]) -> dict[str, str]:
    """diffusers `AutoencoderKLLTX2Video` key -> our module name (19B and 2.3 block lists)."""
    keys = list(keys)
    down_blocks = _count(keys, "encoder.down_blocks.")
    return {key: _diffusers_video_vae_key(key, down_blocks) for key in keys}


VOCODER_RENAMES = (
    ("conv_in", "conv_pre"),
    ("upsamplers", "ups"),
    ("resnets", "resblocks"),
    ("conv_out", "conv_post"),
    ("act_out", "act_post"),
)


def diffusers_vocoder_key(key: str) -> str | None:
    """diffusers `LTX2Vocoder` / `LTX2VocoderWithBWE` key -> our module name (None: not used)."""
    if key.endswith("stft_fn.inverse_basis"):
        return None
    for old, new in VOCODER_RENAMES:
        key = re.sub(rf"(^|\.){old}\.", rf"\g<1>{new}.", key)
    return key.replace(".downsample.filter", ".downsample.lowpass.filter")
