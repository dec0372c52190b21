"""The LTX-2 loader: the single-file checkpoint (DiT, VAEs, vocoder, text projection), Gemma 3 and the optional
x2 latent upsampler, as one pipeline for the generate node."""

from __future__ import annotations

from pathlib import Path

from videosdgx.bundle_files import BundleFiles
from videosdgx.ltx2.pipeline import load_ltx2_pipeline
from videosdgx.ltx2.variants import LTX2_VARIANTS, ltx2_variant
from videosdgx.request import WEIGHT_FORMATS

from ._comfy import io, model_path, register_model_folders
from ._loaders import NONE, WEIGHT_DTYPES, check_choice, check_files, load_request, model_file, weight_options
from .ltx2_types import CATEGORY, LTX2PipelineType


class LTX2Loader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        register_model_folders()  # latent_upscale_models is newer than some ComfyUI releases
        return io.Schema(
            node_id="VideosDGXLTX2Loader",
            display_name="LTX-2 Loader (VideosDGX)",
            category=CATEGORY,
            description="Loads an LTX-2 19B / LTX-2.3 single-file checkpoint (bf16, fp8 or fp4) with its Gemma 3 "
                        "text encoder and, for two-stage distilled sampling, the x2 latent upsampler.",
            inputs=[
                io.Combo.Input("variant", options=list(LTX2_VARIANTS), default="ltx-2-19b-distilled",
                               tooltip="Distilled (8 steps, no guidance) or dev (guided) of LTX-2 19B or LTX-2.3; "
                                       "must match the checkpoint."),
                model_file("ckpt_name", "checkpoints", "ltx-2-19b-*.safetensors or ltx-2.3-22b-*.safetensors."),
                model_file("text_encoder_name", "text_encoders", "Gemma 3 12B (gemma_3_12B_it*.safetensors)."),
                model_file("upsampler_name", "latent_upscale_models",
                           "ltx-2-spatial-upscaler-x2 for two-stage distilled sampling; none for one stage.",
                           optional=True),
                *weight_options(),
                io.Boolean.Input("low_memory", default=False,
                                 tooltip="Release Gemma after encoding and run guidance passes one by one."),
            ],
            outputs=[LTX2PipelineType.Output(display_name="ltx2")],
        )

    @classmethod
    def validate_inputs(cls, variant: str, ckpt_name: str, text_encoder_name: str, upsampler_name: str,
                        weight_dtype: str = "default", weight_format: str = "default",
                        low_memory: bool = False) -> bool | str:
        for name, value, options in (("variant", variant, LTX2_VARIANTS), ("weight_dtype", weight_dtype, WEIGHT_DTYPES),
                                     ("weight_format", weight_format, WEIGHT_FORMATS)):
            if (answer := check_choice(name, value, options)) is not True:
                return answer
        return check_files(ckpt=("checkpoints", ckpt_name), text=("text_encoders", text_encoder_name),
                           upsampler=("latent_upscale_models", upsampler_name))

    @classmethod
    def execute(cls, variant: str, ckpt_name: str, text_encoder_name: str, upsampler_name: str, weight_dtype: str,
                weight_format: str, low_memory: bool) -> io.NodeOutput:
        paths = {"checkpoint": (Path(model_path("checkpoints", ckpt_name)),),
                 "text_encoder": (Path(model_path("text_encoders", text_encoder_name)),)}
        if upsampler_name != NONE:
            paths["upsampler"] = (Path(model_path("latent_upscale_models", upsampler_name)),)
        files = BundleFiles(bundle=ckpt_name, paths=paths)
        return io.NodeOutput(load_ltx2_pipeline(ltx2_variant(variant), files,
                                                load_request(weight_dtype, weight_format), low_memory))
