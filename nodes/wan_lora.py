"""The Wan LoRA loader node: adds a LoRA to a Wan model (or to one Wan2.2 A14B expert); chain it for several.

The model that comes out carries the LoRA as a pending change: the sampler applies every LoRA for its run and
removes them exactly afterwards, so the loaded weights (cached by ComfyUI) are never changed.
"""

from __future__ import annotations

import dataclasses

from videosdgx.runtime.lora import remove_all
from videosdgx.wan.lora import ExpertLora, apply_expert_loras, read_wan_lora

from ._comfy import io, model_path
from ._loaders import check_choice, check_files, model_file
from .wan_types import CATEGORY, WanExperts, WanModelType

EXPERTS = {"all": "all", "high_noise": "high", "low_noise": "low"}


class WanLoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideosDGXWanLoraLoader",
            display_name="Wan LoRA Loader (VideosDGX)",
            category=CATEGORY,
            description="Adds a LoRA (kohya, ComfyUI, diffusers or lightx2v file) to a Wan model; chain several. "
                        "Works on fp16 / bf16 / fp8 weights without a second copy of the model.",
            inputs=[
                WanModelType.Input("model"),
                model_file("lora_name", "loras", "A Wan LoRA from the loras folder."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01, round=0.001),
                io.Combo.Input("expert", options=list(EXPERTS), default="all",
                               tooltip="Wan2.2 A14B: the expert that gets the LoRA (Lightning LoRAs come as a "
                                       "high_noise / low_noise pair); all for every other model."),
            ],
            outputs=[WanModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, lora_name: str, expert: str = "all") -> bool | str:
        answer = check_choice("expert", expert, EXPERTS)
        return check_files(lora=("loras", lora_name)) if answer is True else answer

    @classmethod
    def execute(cls, model: WanExperts, lora_name: str, strength: float, expert: str) -> io.NodeOutput:
        weight = model.models[0].patch_embedding.weight
        lora = read_wan_lora(model_path("loras", lora_name), weight.dtype, weight.device)
        choice = ExpertLora(lora, strength, EXPERTS[expert])
        remove_all(apply_expert_loras(model.models, [choice]))  # refuses a LoRA that does not fit, now
        return io.NodeOutput(dataclasses.replace(model, loras=(*model.loras, choice)))
