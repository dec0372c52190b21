"""Loading the LTX-2 DiT from the official single file or a split transformer file (bf16, fp8 or NVFP4)."""

from __future__ import annotations

import os

from videosdgx.ltx2.config import LTX2Config, config_from_metadata
from videosdgx.ltx2.detect import DIT_LOADER
from videosdgx.ltx2.keys import dit_key, has_dit_prefix
from videosdgx.ltx2.transformer import LTX2Model
from videosdgx.runtime.checkpoint import Checkpoint, open_checkpoint
from videosdgx.runtime.errors import WrongComponentError
from videosdgx.runtime.identify import identify
from videosdgx.runtime.model_files import LoadedModel, LoadRequest, load_model_file

PathLike = str | os.PathLike
RELEASES = {"19B": ("LTX-2 19B", "ltx-2-19b-*.safetensors"), "2.3": ("LTX-2.3 22B", "ltx-2.3-22b-*.safetensors")}


def read_dit_config(path: PathLike) -> LTX2Config:
    """The DiT configuration embedded in a checkpoint, without loading any weight."""
    with open_checkpoint(path) as checkpoint:
        return config_from_metadata(checkpoint.metadata, checkpoint.name)


def check_version(cfg: LTX2Config, expected: str | None, source: str, variant: str = "") -> None:
    """Refuse an LTX-2.3 file where LTX-2 19B is expected, and back."""
    if expected is None or cfg.version == expected:
        return
    what = f"the {variant} variant" if variant else "this model"
    (found, _), (wanted, pattern) = RELEASES[cfg.version], RELEASES[expected]
    raise WrongComponentError(
        f"{source} is an {found} checkpoint, but {what} needs {wanted}. Choose a {pattern} file, "
        f"or pick an {found} variant for this file."
    )


def load_dit(path: PathLike, request: LoadRequest, expected_version: str | None = None, variant: str = "",
             cross_timestep: str = "mixed") -> LoadedModel:
    """The AV DiT of an official single file (`model.diffusion_model.*`) or of a split transformer file.

    Its architecture comes from the embedded `config` metadata; fp8 (`weight_scale` / `input_scale`) and NVFP4
    weights stay quantised (runtime.quantized_linear).
    """
    with open_checkpoint(path) as checkpoint:
        component = identify(checkpoint).component
        cfg = config_from_metadata(checkpoint.metadata, checkpoint.name)
        check_version(cfg, expected_version, checkpoint.name, variant)

    def key_map(opened: Checkpoint):
        prefixed = has_dit_prefix(opened.keys())
        return lambda key: dit_key(key, prefixed)

    return load_model_file(
        path, family="ltx2", component="checkpoint" if component == "checkpoint" else "transformer",
        loader=DIT_LOADER, request=request, key_map=key_map,
        build=lambda shapes, _: LTX2Model(cfg, cross_timestep=cross_timestep),
    )
