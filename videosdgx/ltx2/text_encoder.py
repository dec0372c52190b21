"""LTX-2 / LTX-2.3 prompt encoding: Gemma 3 12B + the checkpoint's text projection and embeddings connectors.

    encoder = load_ltx2_text_encoder(gemma_file, checkpoint_file, LoadRequest(dtype=torch.bfloat16, device=cuda))
    video, audio, mask = encoder.encode(["a cat on a boat", ""])   # [B, 1024, Dv], [B, 1024, Da], [B, 1024]
    encoder.release()             # frees Gemma; the connectors stay; the next encode() loads Gemma again

Dv = Da = 3840 for LTX-2 19B (the DiT's caption projections map them on), Dv = 4096 and Da = 2048 for LTX-2.3.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from videosdgx.ltx2.text_conditioner import LTX2TextConditioner, load_text_conditioner
from videosdgx.runtime.errors import CheckpointError, ConfigurationError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.text.gemma3 import Gemma3TextModel
from videosdgx.text.gemma3_files import load_gemma3, read_gemma3_header
from videosdgx.text.gemma3_tokenizer import (GEMMA_TOKENIZER_FILES, LTX_MAX_TOKENS, Gemma3Tokenizer,
                                             load_gemma3_tokenizer)

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


class LTX2TextContext(NamedTuple):
    """Per-prompt DiT text contexts and their mask (all ones: every position is attended to)."""

    video: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor


class LTX2TextEncoder:
    """Prompts -> `LTX2TextContext`. `release()` frees Gemma once a job's prompts are encoded; the next `encode`
    loads it again through `reload` (when given) so one encoder serves many jobs."""

    def __init__(self, gemma: Gemma3TextModel, tokenizer: Gemma3Tokenizer, conditioner: LTX2TextConditioner,
                 max_length: int = LTX_MAX_TOKENS, reload: Callable[[], Gemma3TextModel] | None = None):
        registers = (conditioner.cfg.video.registers, conditioner.cfg.audio.registers)
        if any(max_length % r for r in registers):
            raise ConfigurationError(f"max_length {max_length} must be a multiple of the connectors' "
                                     f"{max(registers)} registers (LTX-2 uses 1024).")
        self.gemma: Gemma3TextModel | None = gemma
        self.tokenizer = tokenizer
        self.conditioner = conditioner
        self.max_length = max_length
        self.reload = reload

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> LTX2TextContext:
        if self.gemma is None:
            if self.reload is None:
                raise ConfigurationError("The LTX-2 text encoder's Gemma model was released; load the text encoder "
                                         "again to encode new prompts.")
            log.info("Loading Gemma again (it was released after the previous job)")
            self.gemma = self.reload()
        ids, mask = self.tokenizer.encode(prompts, self.max_length)
        device = self.gemma.embed_tokens.weight.device
        states = self.gemma(ids.to(device), mask.to(device))
        conditioner_device = self.conditioner.video_embeddings_connector.learnable_registers.device
        states = [s.to(conditioner_device) for s in states]
        return LTX2TextContext(*self.conditioner(states, mask.to(conditioner_device)))

    def release(self) -> None:
        """Drop the Gemma model (most of this encoder's memory); the projection and connectors stay loaded."""
        self.gemma = None

    @property
    def released(self) -> bool:
        return self.gemma is None


def _tokenizer_next_to(path: PathLike | list) -> Path:
    first = Path(path[0] if isinstance(path, list) else path)
    folder = first if first.is_dir() else first.parent
    for candidate in (folder, folder / "tokenizer", folder.parent / "tokenizer"):
        if any((candidate / name).is_file() for name in GEMMA_TOKENIZER_FILES):
            return candidate
    raise CheckpointError(
        f"No Gemma tokenizer found for {first.name}: the file embeds no `spiece_model` and there is no "
        f"tokenizer.json or tokenizer.model in {folder} or {folder / 'tokenizer'}. Install the Gemma 3 tokenizer "
        "files listed in model_manifest.yaml (role `tokenizer`) next to the text encoder."
    )


def load_ltx2_text_encoder(gemma: PathLike | list, projection: PathLike | list, request: LoadRequest,
                           tokenizer: PathLike | None = None, max_length: int = LTX_MAX_TOKENS,
                           settings: dict | None = None) -> LTX2TextEncoder:
    """Load Gemma 3 (any layout of text.gemma3_files) and the text projection + connectors.

    `projection`: the LTX-2 / 2.3 single-file checkpoint, or the file(s) holding its text-side tensors.
    `tokenizer`: a tokenizer.json / tokenizer.model / folder; default: the tokenizer embedded in the Gemma file,
    else one next to it. `settings`: connector settings when `projection` has no embedded config (see
    `text_conditioner.read_transformer_config`). Every file is checked before the first weight is read.
    """
    header = read_gemma3_header(gemma)
    source = tokenizer or (header.spiece_model if header.spiece_model is not None else _tokenizer_next_to(gemma))
    tokenizer_model = load_gemma3_tokenizer(source)
    conditioner = load_text_conditioner(projection, request, header.hidden, settings).module
    if header.layers + 1 != conditioner.cfg.layers:
        raise CheckpointError(
            f"The Gemma file has {header.layers} layers but the LTX-2 text projection takes "
            f"{conditioner.cfg.layers} hidden states ({conditioner.cfg.layers - 1} layers): LTX-2 needs Gemma 3 12B."
        )
    loaded = load_gemma3(gemma, request)
    log.info("LTX-2 text encoder ready: %s", loaded.identity.summary())
    return LTX2TextEncoder(loaded.module, tokenizer_model, conditioner, max_length,
                           reload=lambda: load_gemma3(gemma, request).module)
