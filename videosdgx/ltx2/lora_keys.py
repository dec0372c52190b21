"""Recognise LoRAs made for the LTX-2 DiT (`transformer_blocks.N.attn1.to_q`, ... in the official names)."""

from __future__ import annotations

from videosdgx.runtime.lora_detect import LoraMatch, LoraTargets

LORA_LOADER = "the LTX-2 LoRA loader (planned: not in this release yet)"


def recognize_lora(targets: LoraTargets) -> LoraMatch | None:
    names = [t.replace("_", ".") if targets.layout == "kohya" else t for t in targets.shapes]
    blocks = {n.split(".")[1] for n in names if n.startswith(("transformer_blocks.", "transformer.blocks."))}
    if not blocks:
        return None
    return LoraMatch("ltx2", f"LTX-2 ({len(blocks)} blocks)", LORA_LOADER)
