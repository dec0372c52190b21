"""T5 / UMT5 tokenizers from `tokenizer.json`, `spiece.model`, or the `spiece_model` bytes inside ComfyUI files.

Output follows the Hugging Face T5 tokenizer called with `padding="max_length", truncation=True`: the text's
pieces, then `</s>`, then `<pad>` up to `max_length`; no BOS. Long prompts keep their first `max_length - 1`
pieces and still end with `</s>`.
"""

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import sentencepiece
import tokenizers
import torch

from videosdgx.runtime.errors import CheckpointError

logger = logging.getLogger(__name__)


class T5Tokenizer:
    """Pads and truncates the pieces of a SentencePiece-style tokenizer the T5 way."""

    def __init__(self, pieces: Callable[[list[str]], list[list[int]]], eos_id: int, pad_id: int):
        self.pieces = pieces
        self.eos_id = eos_id
        self.pad_id = pad_id

    def encode(self, texts: str | Sequence[str], max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, both `[len(texts), max_length]` int64."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = torch.full((len(texts), max_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), max_length), dtype=torch.long)
        for row, (text, pieces) in enumerate(zip(texts, self.pieces(texts))):
            tokens = pieces + [self.eos_id]
            if len(tokens) > max_length:
                logger.warning(
                    "Prompt %d is %d tokens long, over the limit of %d: its end is cut off (%r...).",
                    row, len(tokens), max_length, text[:60],
                )
                tokens = pieces[: max_length - 1] + [self.eos_id]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        return ids, mask


def _from_sentencepiece(model_proto: bytes, source: str) -> T5Tokenizer:
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model_proto)
    except RuntimeError as error:
        raise CheckpointError(f"{source} is not a valid SentencePiece model ({error}). Download it again.") from None
    if processor.eos_id() < 0 or processor.pad_id() < 0:
        raise CheckpointError(f"{source} has no `</s>` or `<pad>` token: it is not a T5 / UMT5 tokenizer.")
    return T5Tokenizer(processor.encode, eos_id=processor.eos_id(), pad_id=processor.pad_id())


def _from_tokenizer_json(path: Path) -> T5Tokenizer:
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:
        raise CheckpointError(f"{path} is not a valid tokenizer.json ({error}). Download it again.") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    eos_id, pad_id = tokenizer.token_to_id("</s>"), tokenizer.token_to_id("<pad>")
    if eos_id is None or pad_id is None:
        raise CheckpointError(f"{path} has no `</s>` or `<pad>` token: it is not a T5 / UMT5 tokenizer.")
    return T5Tokenizer(
        lambda texts: [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)], eos_id, pad_id
    )


def load_tokenizer(source: str | os.PathLike | bytes | torch.Tensor) -> T5Tokenizer:
    """Load a T5 / UMT5 tokenizer.

    `source`: a `tokenizer.json`, a `spiece.model`, a folder holding either (`tokenizer.json` preferred, as the
    official Wan code reads it), or the serialized SentencePiece model as bytes or as the uint8 `spiece_model`
    tensor of ComfyUI umt5 files.
    """
    if isinstance(source, torch.Tensor):
        return _from_sentencepiece(source.cpu().numpy().tobytes(), "The `spiece_model` tensor")
    if isinstance(source, (bytes, bytearray)):
        return _from_sentencepiece(bytes(source), "The given tokenizer bytes")
    path = Path(source)
    if path.is_dir():
        candidates = [path / "tokenizer.json", path / "spiece.model"]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise CheckpointError(f"{path} holds neither tokenizer.json nor spiece.model. Download the tokenizer.")
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"Tokenizer file {path} does not exist. Check the path or download the tokenizer.")
    if path.suffix == ".json":
        return _from_tokenizer_json(path)
    return _from_sentencepiece(path.read_bytes(), str(path))
