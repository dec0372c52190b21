"""Wan prompt text: cleaning, the official default negative prompts, and prompt -> UMT5 context rows.

The official cleaning also runs `ftfy.fix_text` first (mojibake repair); ftfy is not a dependency here, so
prompts with broken encodings are tokenized as given.
"""

import html
import re
from collections.abc import Sequence

import torch

from videosdgx.text.t5 import T5Encoder
from videosdgx.text.tokenizer import T5Tokenizer

# `wan/configs/shared_config.py` `sample_neg_prompt`, identical in Wan2.1 and Wan2.2 (also Wan2.2 I2V-A14B).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
# Wan2.1 I2V-14B (`wan_i2v_14B.py`) and FLF2V-14B (`configs/__init__.py`) prepend a camera phrase.
WAN_I2V_NEGATIVE_PROMPT = "镜头晃动，" + WAN_NEGATIVE_PROMPT
WAN_FLF2V_NEGATIVE_PROMPT = "镜头切换，" + WAN_NEGATIVE_PROMPT

WAN_TEXT_LEN = 512

# Unicode White_Space, as `\s` of the `regex` package the reference uses (Python's `\s` adds U+001C..U+001F).
_WHITESPACE = re.compile(r"[^\S\x1c-\x1f]+")


def clean_prompt(text: str) -> str:
    """Unescape HTML entities twice and collapse runs of whitespace to one space, as Wan's tokenizer wrapper."""
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip()


@torch.no_grad()
def encode_prompts(
    encoder: T5Encoder, tokenizer: T5Tokenizer, texts: Sequence[str], max_length: int = WAN_TEXT_LEN
) -> list[torch.Tensor]:
    """Clean, tokenize and encode prompts; one `[tokens_i, d_model]` tensor per prompt, padding rows dropped.

    The Wan DiT zero-pads each context back to 512 rows itself.
    """
    ids, mask = tokenizer.encode([clean_prompt(t) for t in texts], max_length=max_length)
    device = encoder.shared.weight.device
    hidden = encoder(ids.to(device), mask.to(device))
    return [row[:length] for row, length in zip(hidden, mask.sum(dim=1).tolist())]
