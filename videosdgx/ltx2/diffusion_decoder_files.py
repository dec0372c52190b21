"""The diffusion video decoder's files: the release's raw layout, diffusers' layout, and its configuration.

* Raw (ltx-core, `ltx-2.5-video-vae-*.safetensors`, a `CausalDiffusionVAE`): `vae.decoder.*` (or bare `decoder.*`)
  beside the encoder; fused `attn.qkv` (split into `attn.qkv.to_q/to_k/to_v`), static per-block gates `gate_msa`
  / `gate_mlp` / `gate_ctx` folded into `attn.proj` / `mlp.w_down` / `context_proj` (W <- g W, b <- g b, in
  float32), `t_embedder.mlp.{0,2}` -> `t_embedder.timestep_embedder.linear_{1,2}`, the `coarse_*` preview head
  dropped, `per_channel_statistics.{mean,std}-of-means` -> `latents_mean` / `latents_std`. Its configuration is the
  `decoder` dict of the header's `vae` config (`model_output_type` beside it), with ltx-core's defaults.
* diffusers (`LTX2VideoDiffusionDecoderModel`): `decoder.*` with `to_q/to_k/to_v`, `to_out.0`, `norm_q/norm_k`,
  gates already folded, top-level `latents_mean` / `latents_std`; configuration from the `config.json` beside the
  weights (`decoder_*` fields), else diffusers' defaults.
Widths, depths, head size and timestep width are read from the tensor shapes in both layouts.
"""

from __future__ import annotations

import json
import logging
import math

import torch

from videosdgx.ltx2.diffusion_decoder import DiffusionDecoderConfig
from videosdgx.ltx2.media_keys import STATS
from videosdgx.runtime.checkpoint import Checkpoint
from videosdgx.runtime.errors import CheckpointError

log = logging.getLogger(__name__)
RAW_PREFIXES = ("vae.decoder.", "decoder.")
RAW_STATS_PREFIXES = ("vae.", "")
RAW_MARKER = "conv_in_x_t.weight"
DIFFUSERS_MARKER = "decoder.det_stages.0.0.attn.to_q.weight"
GATES = {".gate_msa": ".attn.proj.", ".gate_mlp": ".mlp.w_down.", ".gate_ctx": ".context_proj."}
DIFFUSERS_NAMES = ((".attn.to_q.", ".attn.qkv.to_q."), (".attn.to_k.", ".attn.qkv.to_k."),
                   (".attn.to_v.", ".attn.qkv.to_v."), (".attn.to_out.0.", ".attn.proj."),
                   (".attn.norm_q.", ".attn.q_norm."), (".attn.norm_k.", ".attn.k_norm."))
# diffusers' LTX2VideoDiffusionDecoderModel defaults (the config.json fields it writes)
DIFFUSERS_DEFAULTS = {"decoder_stage_kernels": [[3, 7, 7], [3, 7, 7], [3, 5, 5], [3, 5, 5]],
                      "decoder_upsample_strides": [[1, 2, 2], [2, 1, 1], [2, 2, 2], [2, 2, 2]],
                      "decoder_stage5_kernel": [11, 11, 11], "decoder_timestep_scale_multiplier": 1000.0,
                      "decoder_model_output_type": "x0", "decoder_num_inference_steps": 1, "out_channels": 3}


def is_diffusers(keys) -> bool:
    return DIFFUSERS_MARKER in set(keys)


def raw_prefix(keys) -> str:
    keys = set(keys)
    for prefix in RAW_PREFIXES:
        if prefix + RAW_MARKER in keys:
            return prefix
    raise CheckpointError("No LTX-2.5 diffusion decoder in this file (no `vae.decoder.conv_in_x_t.weight`).")


def convert_raw(checkpoint: Checkpoint) -> Checkpoint:
    """The raw release layout as our module's names: prefix stripped, qkv split, gates folded (see above)."""
    prefix = raw_prefix(checkpoint.keys())
    stats_prefix = "vae." if prefix == "vae.decoder." else ""
    keys = [k for k in checkpoint.keys() if k.startswith(prefix)]
    gates = {k[len(prefix):]: checkpoint.get(k) for k in keys if k.endswith(tuple(GATES))}
    tensors: dict[str, torch.Tensor] = {}
    for key in keys:
        name = key[len(prefix):]
        if name.startswith("coarse_") or name in gates:
            continue
        name = name.replace("t_embedder.mlp.0.", "t_embedder.timestep_embedder.linear_1.")
        name = name.replace("t_embedder.mlp.2.", "t_embedder.timestep_embedder.linear_2.")
        value = _folded(name, checkpoint.get(key), gates)
        if name.endswith((".attn.qkv.weight", ".attn.qkv.bias")):
            head, leaf = name.rsplit(".", 1)
            tensors.update({f"{head}.to_{part}.{leaf}": chunk.clone()
                            for part, chunk in zip("qkv", value.chunk(3, dim=0))})
        else:
            tensors[name] = value
    for stat, name in STATS.items():
        if stats_prefix + stat in checkpoint:
            tensors[name] = checkpoint.get(stats_prefix + stat)
    converted = Checkpoint.from_tensors(tensors, checkpoint.files[0])
    converted.metadata = checkpoint.metadata  # the header's config
    return converted


def _folded(name: str, value: torch.Tensor, gates: dict[str, torch.Tensor]) -> torch.Tensor:
    for gate_suffix, owner in GATES.items():
        if owner in name:
            gate = gates.get(name.split(owner)[0] + gate_suffix)
            if gate is None:
                return value
            gate = gate.float().reshape(-1, *([1] * (value.ndim - 1)))
            return (gate * value.float()).to(value.dtype)
    return value


def diffusers_key(key: str) -> str | None:
    """diffusers' name -> ours (None for keys that are not the decoder's)."""
    if key in ("latents_mean", "latents_std"):
        return key
    if not key.startswith("decoder."):
        return None
    key = key.removeprefix("decoder.")
    for theirs, ours in DIFFUSERS_NAMES:
        key = key.replace(theirs, ours)
    return key


def config_from_files(shapes: dict[str, tuple[int, ...]], vae_header: dict | None,
                      config_json: dict | None) -> DiffusionDecoderConfig:
    """Architecture from the shapes (module names), the rest from the raw header or diffusers' config.json."""
    if config_json is not None:
        settings = DIFFUSERS_DEFAULTS | config_json
        strides = [tuple(s) for s in settings["decoder_upsample_strides"]]
        fields = dict(stage_kernels=settings["decoder_stage_kernels"], stage5_kernel=settings["decoder_stage5_kernel"],
                      steps=settings["decoder_num_inference_steps"],
                      timestep_scale=settings["decoder_timestep_scale_multiplier"],
                      prediction=settings["decoder_model_output_type"], out_channels=settings["out_channels"])
    else:
        vae = vae_header or {}
        if "decoder" not in vae:
            log.warning("The diffusion video VAE's header has no `vae.decoder` config: using ltx-core's defaults "
                        "(windows, strides, %d steps, %s prediction)", DiffusionDecoderConfig.steps,
                        DiffusionDecoderConfig.prediction)
        decoder = vae.get("decoder", vae)
        default = DiffusionDecoderConfig()
        strides = ([tuple(stride) for stride, _ in decoder["upsamples"]] if "upsamples" in decoder
                   else [stride for stride, _ in default.upsamples])
        fields = dict(stage_kernels=decoder.get("stage_kernels", default.stage_kernels),
                      stage5_kernel=decoder.get("stage5_kernel", default.stage5_kernel),
                      steps=decoder.get("default_num_inference_steps", default.steps),
                      timestep_scale=decoder.get("timestep_scale_multiplier", default.timestep_scale),
                      prediction=vae.get("model_output_type", default.prediction),
                      out_channels=decoder.get("out_channels", default.out_channels))
    stages = len(strides)
    channels = [shapes["conv_in.weight"][0]] + [shapes[f"upsamples.{i}.proj.weight"][0] // math.prod(strides[i])
                                                for i in range(stages)]
    depths = [len({k.split(".")[2] for k in shapes if k.startswith(f"det_stages.{i}.")}) for i in range(stages)]
    depths.append(len({k.split(".")[1] for k in shapes if k.startswith("diff_blocks.")}))
    reductions = [channels[i] // channels[i + 1] for i in range(stages)]
    width = shapes["conv_in_x_t.weight"][0]
    patch = math.isqrt(shapes["conv_in_x_t.weight"][1] // fields["out_channels"])
    return DiffusionDecoderConfig(
        stage_channels=tuple(channels), stage_depths=tuple(depths),
        stage_kernels=tuple(tuple(k) for k in fields["stage_kernels"][:stages]),
        upsamples=tuple(zip(strides, reductions)), stage5_kernel=tuple(fields["stage5_kernel"]),
        stage5_channels=None if width == channels[-1] else width, latent_channels=shapes["conv_in.weight"][1],
        out_channels=fields["out_channels"], patch_size=patch, head_dim=shapes["diff_blocks.0.attn.q_norm.weight"][0],
        t_emb_dim=shapes["t_embedder.timestep_embedder.linear_1.weight"][0], steps=int(fields["steps"]),
        timestep_scale=float(fields["timestep_scale"]), prediction=str(fields["prediction"]))


def read_config_json(checkpoint: Checkpoint) -> dict | None:
    """diffusers' config.json beside the weights, if it is the diffusion decoder's."""
    candidate = checkpoint.files[0].parent / "config.json"
    if not candidate.is_file():
        log.info("No config.json next to %s: diffusers' default diffusion-decoder settings", checkpoint.name)
        return {}
    try:
        config = json.loads(candidate.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{candidate} is not valid JSON ({exc}); re-download the diffusers folder.") from None
    return config if config.get("_class_name") == "LTX2VideoDiffusionDecoderModel" else {}
