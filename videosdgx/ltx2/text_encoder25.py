"""LTX-2.5 prompt encoding: the LTX fine-tuned Gemma 4 12B with its projections bundled in one file.

    encoder = load_ltx25_text_encoder("gemma4-12b-with-proj-ltx-2.5-bf16.safetensors", LoadRequest(...))
    video, audio, mask = encoder.encode(["a cat on a boat", ""])   # [B, 1024, Dv], [B, 1024, Da], [B, 1024]

The file holds the Gemma 4 language model (`model.language_model.*`, or ComfyUI's flat `model.*`), the per-modality
text projections (`text_embedding_projection.{video,audio}_aggregate_embed.*`) and the embeddings connectors
(`model.diffusion_model.{video,audio}_embeddings_connector.*`), the names ltx-core 1.2 maps. Everything after Gemma
is LTX-2.3's text side (`text_conditioner`); prompt handling is LTX-2's (`<bos>`, left padding to 1024).
"""

from __future__ import annotations

import logging
import os

from videosdgx.ltx2.text_conditioner import load_text_conditioner
from videosdgx.ltx2.text_encoder import LTX2TextEncoder, _tokenizer_next_to
from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.errors import CheckpointError
from videosdgx.runtime.identify import expect, identify
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file
from videosdgx.text.gemma3_tokenizer import LTX_MAX_TOKENS, load_gemma3_tokenizer
from videosdgx.text.gemma4 import Gemma4TextModel
from videosdgx.text.gemma4_files import config_from_shapes, config_json, gemma4_key_map

log = logging.getLogger(__name__)
PathLike = str | os.PathLike
LOADER = "the LTX-2.5 text encoder loader"


def load_gemma4(path: PathLike | list, request: LoadRequest) -> LoadedModel:
    """The Gemma 4 text model of an LTX-2.5 text-encoder file."""

    def build(shapes: dict[str, tuple[int, ...]], checkpoint: Checkpoint) -> Gemma4TextModel:
        settings = config_json(checkpoint)
        if settings is None:
            log.info("No Gemma 4 config.json next to %s: transformers' Gemma 4 attention defaults", checkpoint.name)
        return Gemma4TextModel(config_from_shapes(shapes, settings))

    return load_model_file(path, family="ltx2", component="text encoder", loader=LOADER, request=request,
                           key_map=lambda checkpoint: gemma4_key_map(checkpoint.keys(), checkpoint.name).get,
                           build=build)


def load_ltx25_text_encoder(path: PathLike | list, request: LoadRequest, tokenizer: PathLike | None = None,
                            max_length: int = LTX_MAX_TOKENS, settings: dict | None = None) -> LTX2TextEncoder:
    """Gemma 4 + projections + connectors from `path`. `tokenizer`: tokenizer.json / tokenizer.model / a folder
    (default: one next to the file, or in `tokenizer/` beside it). `settings`: the DiT file's `transformer` config
    (`text_conditioner.read_transformer_config`) when the text-encoder file embeds none."""
    with open_checkpoint(path) as checkpoint:
        expect(identify(checkpoint), "ltx2", "text encoder", checkpoint.name, LOADER)
        names = gemma4_key_map(checkpoint.keys(), checkpoint.name)
        hidden = checkpoint.info(next(k for k, n in names.items() if n == "embed_tokens.weight")).shape[1]
        layers = len({n.split(".")[1] for n in names.values() if n.startswith("layers.")})
    tokenizer_model = load_gemma3_tokenizer(tokenizer or _tokenizer_next_to(path))
    conditioner = load_text_conditioner(path, request, hidden, settings).module
    if layers + 1 != conditioner.cfg.layers:
        raise CheckpointError(
            f"The Gemma 4 model has {layers} layers but the LTX-2.5 text projection takes "
            f"{conditioner.cfg.layers} hidden states: the file is damaged. Download it again.")
    loaded = load_gemma4(path, request)
    log.info("LTX-2.5 text encoder ready: %s", loaded.identity.summary())
    return LTX2TextEncoder(loaded.module, tokenizer_model, conditioner, max_length,
                           reload=lambda: load_gemma4(path, request).module)
