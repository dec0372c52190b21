"""Socket types of the MAGI-1 node family and the payloads that travel on them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from videosdgx.magi1.loaders import MagiTextEncoder
from videosdgx.magi1.special_tokens import SpecialTokens
from videosdgx.magi1.transformer import MagiDiT
from videosdgx.magi1.variants import MagiVariant

from ._comfy import io

CATEGORY = "VideosDGX/MAGI-1"

MagiModelType = io.Custom("VDGX_MAGI1_MODEL")
MagiTextEncoderType = io.Custom("VDGX_MAGI1_TEXT_ENCODER")
MagiVAEType = io.Custom("VDGX_MAGI1_VAE")
MagiConditioningType = io.Custom("VDGX_MAGI1_CONDITIONING")


@dataclass(frozen=True)
class MagiModel:
    dit: MagiDiT
    variant: MagiVariant


@dataclass(frozen=True)
class MagiText:
    encoder: MagiTextEncoder
    tokens: SpecialTokens


@dataclass(frozen=True)
class MagiConditioning:
    """One encoded prompt per chunk (the last one repeats), with the special tokens to prepend."""

    prompts: tuple[str, ...]
    captions: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    tokens: SpecialTokens
