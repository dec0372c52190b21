"""Tokenizers from `tokenizer.json`, a SentencePiece model file, or the `spiece_model` bytes inside ComfyUI files.

`load_vocabulary` reads any of these into a `Vocabulary` (text -> piece ids, plus the special ids). Two padding
policies sit on top:
* `T5Tokenizer` (`load_tokenizer`) follows the Hugging Face T5 tokenizer called with `padding="max_length",
  truncation=True`: the text's pieces, then `</s>`, then `<pad>` up to `max_length`; no BOS. Long prompts keep their
  first `max_length - 1` pieces and still end with `</s>`.
* `Gemma3Tokenizer` (`text.gemma3_tokenizer`) puts `<bos>` first and pads on the left.
"""

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece
import tokenizers
import torch

from videosdgx.runtime.errors import CheckpointError

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = {"pad": ("<pad>",), "eos": ("</s>", "<eos>"), "bos": ("<bos>", "<s>")}
T5_FILES = ("tokenizer.json", "spiece.model")


@dataclass(frozen=True)
class Vocabulary:
    """Text -> piece ids (no special tokens added) and the ids of `pad`, `eos`, `bos` (None when absent)."""

    pieces: Callable[[list[str]], list[list[int]]]
    special: dict[str, int | None]
    source: str


def warn_truncated(row: int, length: int, max_length: int, text: str) -> None:
    logger.warning("Prompt %d is %d tokens long, over the limit of %d: its end is cut off (%r...).",
                   row, length, max_length, text[:60])


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
                warn_truncated(row, len(tokens), max_length, text)
                tokens = pieces[: max_length - 1] + [self.eos_id]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        return ids, mask


def _from_sentencepiece(model_proto: bytes, source: str) -> Vocabulary:
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model_proto)
    except RuntimeError as error:
        raise CheckpointError(f"{source} is not a valid SentencePiece model ({error}). Download it again.") from None
    special = {"pad": processor.pad_id(), "eos": processor.eos_id(), "bos": processor.bos_id()}
    return Vocabulary(processor.encode, {k: (v if v >= 0 else None) for k, v in special.items()}, source)


def _from_tokenizer_json(path: Path) -> Vocabulary:
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:
        raise CheckpointError(f"{path} is not a valid tokenizer.json ({error}). Download it again.") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    special = {kind: next((i for name in names if (i := tokenizer.token_to_id(name)) is not None), None)
               for kind, names in SPECIAL_TOKENS.items()}
    return Vocabulary(lambda texts: [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)],
                      special, str(path))


def load_vocabulary(source: str | os.PathLike | bytes | torch.Tensor,
                    folder_files: Sequence[str] = T5_FILES) -> Vocabulary:
    """Read a tokenizer: a `tokenizer.json`, a SentencePiece model file, a folder holding one of `folder_files`
    (the first found wins), or a serialized SentencePiece model as bytes or as a uint8 `spiece_model` tensor."""
    if isinstance(source, torch.Tensor):
        return _from_sentencepiece(source.cpu().numpy().tobytes(), "The `spiece_model` tensor")
    if isinstance(source, (bytes, bytearray)):
        return _from_sentencepiece(bytes(source), "The given tokenizer bytes")
    path = Path(source)
    if path.is_dir():
        found = [path / name for name in folder_files if (path / name).is_file()]
        if not found:
            raise CheckpointError(f"{path} holds neither {' nor '.join(folder_files)}. Download the tokenizer.")
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"Tokenizer file {path} does not exist. Check the path or download the tokenizer.")
    if path.suffix == ".json":
        return _from_tokenizer_json(path)
    return _from_sentencepiece(path.read_bytes(), str(path))


def load_tokenizer(source: str | os.PathLike | bytes | torch.Tensor) -> T5Tokenizer:
    """Load a T5 / UMT5 tokenizer.

    `source`: a `tokenizer.json`, a `spiece.model`, a folder holding either (`tokenizer.json` preferred, as the
    official Wan code reads it), or the serialized SentencePiece model as bytes or as the uint8 `spiece_model`
    tensor of ComfyUI umt5 files.
    """
    vocabulary = load_vocabulary(source)
    eos_id, pad_id = vocabulary.special["eos"], vocabulary.special["pad"]
    if eos_id is None or pad_id is None:
        raise CheckpointError(f"{vocabulary.source} has no `</s>` or `<pad>` token: it is not a T5 / UMT5 tokenizer.")
    return T5Tokenizer(vocabulary.pieces, eos_id=eos_id, pad_id=pad_id)
