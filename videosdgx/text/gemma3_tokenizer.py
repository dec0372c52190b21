"""The Gemma 3 tokenizer with LTX-2's prompt handling.

LTX-2 (ltx-core, diffusers' `LTX2Pipeline`) strips each prompt, prepends `<bos>` without a chat template, cuts the
ids after `max_length` (1024) and pads on the **left** with `<pad>` (id 0) up to `max_length`; the attention mask
marks the real tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from videosdgx.runtime.errors import CheckpointError
from videosdgx.text.tokenizer import Vocabulary, load_vocabulary, warn_truncated

GEMMA_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
LTX_MAX_TOKENS = 1024


class Gemma3Tokenizer:
    """Prompts -> `(ids, mask)`, both `[len(prompts), max_length]` int64, left padded, `<bos>` first."""

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.bos_id = vocabulary.special["bos"]
        self.pad_id = vocabulary.special["pad"]
        if self.bos_id is None or self.pad_id is None:
            raise CheckpointError(
                f"{vocabulary.source} has no `<bos>` or `<pad>` token: it is not a Gemma 3 tokenizer. Use the "
                "tokenizer.json / tokenizer.model of google/gemma-3-12b-it (manifest role `tokenizer`)."
            )

    def encode(self, prompts: str | Sequence[str], max_length: int = LTX_MAX_TOKENS) -> tuple[torch.Tensor, ...]:
        prompts = [p.strip() for p in ([prompts] if isinstance(prompts, str) else prompts)]
        ids = torch.full((len(prompts), max_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), max_length), dtype=torch.long)
        for row, (text, pieces) in enumerate(zip(prompts, self.vocabulary.pieces(prompts))):
            tokens = [self.bos_id] + pieces
            if len(tokens) > max_length:
                warn_truncated(row, len(tokens), max_length, text)
                tokens = tokens[:max_length]
            ids[row, max_length - len(tokens):] = torch.tensor(tokens)
            mask[row, max_length - len(tokens):] = 1
        return ids, mask


def load_gemma3_tokenizer(source: str | os.PathLike | bytes | torch.Tensor) -> Gemma3Tokenizer:
    """From a `tokenizer.json`, a `tokenizer.model`, a folder holding either, or SentencePiece bytes / the uint8
    `spiece_model` tensor of ComfyUI text-encoder files."""
    return Gemma3Tokenizer(load_vocabulary(source, GEMMA_TOKENIZER_FILES))
