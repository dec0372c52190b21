"""Key conversion between the official Wan VAE layouts (2.1 / 2.2) and diffusers' `AutoencoderKLWan`.

A key is split into a block prefix and the rest. The block prefix is renamed by an explicit table of
(official, diffusers) templates, where `{i}` stands for an index kept as is; the rest is renamed by
`RESIDUAL_RULES`. Both tables read in either direction. The Wan 2.2 table was built by instantiating
both tiny models and matching module structure; `tests/test_wan_vae.py` checks it key by key.
"""

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from videosdgx.runtime.errors import CheckpointError

T = TypeVar("T")
Rule = tuple[str, str]

# Inside a residual block: the official nn.Sequential indices vs diffusers' named layers.
RESIDUAL_RULES: list[Rule] = [
    ("residual.0.", "norm1."),
    ("residual.2.", "conv1."),
    ("residual.3.", "norm2."),
    ("residual.6.", "conv2."),
    ("shortcut.", "conv_shortcut."),
]

# Blocks named the same way in both versions.
COMMON_RULES: list[Rule] = [
    ("conv1.", "quant_conv."),
    ("conv2.", "post_quant_conv."),
    *(
        rule
        for part in ("encoder", "decoder")
        for rule in (
            (f"{part}.conv1.", f"{part}.conv_in."),
            (f"{part}.head.0.", f"{part}.norm_out."),
            (f"{part}.head.2.", f"{part}.conv_out."),
            (f"{part}.middle.0.", f"{part}.mid_block.resnets.0."),
            (f"{part}.middle.1.", f"{part}.mid_block.attentions.0."),
            (f"{part}.middle.2.", f"{part}.mid_block.resnets.1."),
        )
    ),
]


def wan21_rules(num_res_blocks: int = 2, num_stages: int = 4) -> list[Rule]:
    """Wan 2.1: the encoder list maps index for index; the decoder's flat list of `num_res_blocks + 1`
    residual blocks + 1 upsample per stage is grouped into `up_blocks.{stage}`."""
    per_stage = num_res_blocks + 2
    decoder = [
        (f"decoder.upsamples.{stage * per_stage + j}.", f"decoder.up_blocks.{stage}.resnets.{j}.")
        for stage in range(num_stages)
        for j in range(num_res_blocks + 1)
    ] + [
        (f"decoder.upsamples.{stage * per_stage + num_res_blocks + 1}.", f"decoder.up_blocks.{stage}.upsamplers.0.")
        for stage in range(num_stages - 1)
    ]
    return [*COMMON_RULES, ("encoder.downsamples.{i}.", "encoder.down_blocks.{i}."), *decoder]


def wan22_rules(num_res_blocks: int = 2) -> list[Rule]:
    """Wan 2.2: stage `{i}` keeps its index; inside it, residual blocks come first, then the resample."""
    return [
        *COMMON_RULES,
        *(
            (f"encoder.downsamples.{{i}}.downsamples.{j}.", f"encoder.down_blocks.{{i}}.resnets.{j}.")
            for j in range(num_res_blocks)
        ),
        (f"encoder.downsamples.{{i}}.downsamples.{num_res_blocks}.", "encoder.down_blocks.{i}.downsampler."),
        *(
            (f"decoder.upsamples.{{i}}.upsamples.{j}.", f"decoder.up_blocks.{{i}}.resnets.{j}.")
            for j in range(num_res_blocks + 1)
        ),
        (f"decoder.upsamples.{{i}}.upsamples.{num_res_blocks + 1}.", "decoder.up_blocks.{i}.upsampler."),
    ]


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)"))


def _rename(key: str, rules: list[Rule], reverse: bool) -> str:
    for official, diffusers in rules:
        source, target = (diffusers, official) if reverse else (official, diffusers)
        match = _template_regex(source).match(key)
        if match is None:
            continue
        rest = key[match.end() :]
        for r_official, r_diffusers in RESIDUAL_RULES:
            r_source, r_target = (r_diffusers, r_official) if reverse else (r_official, r_diffusers)
            if rest.startswith(r_source):
                rest = r_target + rest[len(r_source) :]
                break
        return target.replace("{i}", match.group("i") if "{i}" in source else "") + rest
    side = "diffusers" if reverse else "official"
    raise CheckpointError(f"Unexpected key {key!r} in a {side}-layout Wan VAE file; the file is not a Wan VAE.")


def _indices(keys: Iterable[str], prefix: str) -> set[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return {int(m.group(1)) for key in keys if (m := pattern.match(key))}


def is_diffusers_vae(keys: Iterable[str]) -> bool:
    """True for a diffusers `AutoencoderKLWan` state dict (2.1 or 2.2)."""
    keys = set(keys)
    return "post_quant_conv.weight" in keys and "decoder.mid_block.attentions.0.to_qkv.weight" in keys


def _is_wan22_diffusers(keys: set[str]) -> bool:
    return any(k.startswith("encoder.down_blocks.") and ".resnets." in k for k in keys)


def diffusers_to_official(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename a diffusers `AutoencoderKLWan` state dict (2.1 or 2.2) to the official key names."""
    keys = set(state_dict)
    if not is_diffusers_vae(keys):
        raise CheckpointError("This file is not a diffusers Wan VAE (no post_quant_conv / mid_block attention).")
    num_res_blocks = len(_indices(keys, "decoder.up_blocks.0.resnets.")) - 1
    if _is_wan22_diffusers(keys):
        rules = wan22_rules(num_res_blocks)
    else:
        rules = wan21_rules(num_res_blocks, len(_indices(keys, "decoder.up_blocks.")))
    return {_rename(k, rules, reverse=True): v for k, v in state_dict.items()}


def official_to_diffusers(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename an official-layout Wan VAE state dict (2.1 or 2.2) to diffusers' `AutoencoderKLWan` names."""
    keys = set(state_dict)
    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in keys:
        num_res_blocks = len(_indices(keys, "decoder.upsamples.0.upsamples.")) - 2
        rules = wan22_rules(num_res_blocks)
    else:
        resamples = sorted(
            int(m.group(1)) for k in keys if (m := re.match(r"decoder\.upsamples\.(\d+)\.resample\.1\.weight", k))
        )
        if not resamples:
            raise CheckpointError("This file is not an official-layout Wan VAE (no decoder upsample layers).")
        num_res_blocks = resamples[0] - 1
        rules = wan21_rules(num_res_blocks, len(resamples) + 1)
    return {_rename(k, rules, reverse=False): v for k, v in state_dict.items()}
