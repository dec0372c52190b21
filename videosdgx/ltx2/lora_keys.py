"""LoRAs on the LTX-2 DiT: recognising them (`transformer_blocks.N.attn1.to_q`, ... in the official names, which
are ours) and reading one for the two-stage dev flow (the distilled LoRA applied for the refining steps)."""

from __future__ import annotations

import os

from videosdgx.ltx2.keys import TEXT_SIDE
from videosdgx.runtime.lora import load_lora_file
from videosdgx.runtime.lora_detect import LoraMatch, LoraTargets
from videosdgx.runtime.lora_formats import LoraFile
from videosdgx.runtime.model_files import LoadRequest

LORA_LOADER = "the LTX-2 Loader's distilled_lora input (VideosDGXLTX2Loader)"


def recognize_lora(targets: LoraTargets) -> LoraMatch | None:
    names = [t.replace("_", ".") if targets.layout == "kohya" else t for t in targets.shapes]
    blocks = {n.split(".")[1] for n in names if n.startswith(("transformer_blocks.", "transformer.blocks."))}
    if not blocks:
        return None
    return LoraMatch("ltx2", f"LTX-2 ({len(blocks)} blocks)", LORA_LOADER)


def is_text_side(target: str) -> bool:
    """A LoRA target in the text connectors (they live in the text encoder, not in the DiT)."""
    return target.startswith(TEXT_SIDE)


def load_ltx2_lora(path: str | os.PathLike, load: LoadRequest) -> LoraFile:
    """An LTX-2 LoRA file read onto the load device in the load dtype; other files are refused with a message."""
    return load_lora_file(path, "ltx2", LORA_LOADER, dtype=load.dtype, device=load.device)
