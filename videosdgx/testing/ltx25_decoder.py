"""Tiny LTX-2.5 video VAE files with the diffusion decoder, in the release's raw layout (ltx-core
`CausalDiffusionVAE`): `vae.decoder.*` (or bare `decoder.*`) with fused `attn.qkv`, unfolded static gates on the
diffusion blocks, `t_embedder.mlp.{0,2}`, a `coarse_*` preview head, `vae.per_channel_statistics.*` (with the
release's unused extras), the video encoder beside it, and the `vae` config (decoder fields nested) in the header.
Weights are random.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from videosdgx.ltx2.diffusion_decoder import DiffusionDecoderConfig, DiffusionVideoDecoder
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.ltx2_media import EXTRA_STATS, video_vae_state

# Parity size: every stage's window cuts its grid for a [1, 8, 3, 2, 3] latent (stage grids 5x2x3, 5x4x6,
# 9x4x6, 17x4x6, context 17x8x12); four and two heads; a temporal-only third upsampler keeps stage 5 small.
TINY_DECODER = DiffusionDecoderConfig(
    stage_channels=(32, 16, 16, 16, 16), stage_depths=(2, 1, 1, 2, 3),
    stage_kernels=((3, 1, 3), (3, 3, 5), (3, 3, 5), (3, 3, 5)),
    upsamples=(((1, 2, 2), 2), ((2, 1, 1), 1), ((2, 1, 1), 1), ((2, 2, 2), 1)), stage5_kernel=(3, 5, 7),
    latent_channels=8, patch_size=2, head_dim=8, t_emb_dim=16, steps=2, timestep_scale=1.0, prediction="v")
# The demo bundle's: the LTX-2 strides (x8 time, x8 space, patch 2 = the tiny conv VAE's x16).
DEMO_DECODER = DiffusionDecoderConfig(
    stage_channels=(32, 16, 16, 16, 16), stage_depths=(1, 1, 1, 1, 2),
    stage_kernels=((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    upsamples=(((1, 2, 2), 2), ((2, 1, 1), 1), ((2, 2, 2), 1), ((2, 2, 2), 1)), stage5_kernel=(3, 5, 5),
    latent_channels=8, patch_size=2, head_dim=8, t_emb_dim=16, steps=2, timestep_scale=1.0, prediction="v")


def decoder_state(cfg: DiffusionDecoderConfig = TINY_DECODER, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under our module's names: matrices ~1/sqrt(fan-in), norm scales near 1, the rest small."""
    with torch.device("meta"):
        module = DiffusionVideoDecoder(cfg)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in module.state_dict().items():
        noise = torch.randn(tensor.shape, generator=generator)
        if "norm" in name.split(".")[-2:][0] and name.endswith(".weight"):
            noise = 1 + 0.2 * noise
        elif tensor.ndim == 2 and not name.endswith("scale_shift_table"):
            noise = noise / tensor.shape[1] ** 0.5
        else:
            noise = 0.3 * noise
        state[name] = noise
    state["latents_std"] = state["latents_std"].abs() + 0.5
    return state


def diffusers_decoder(cfg: DiffusionDecoderConfig, state: dict[str, torch.Tensor]):
    """diffusers' `LTX2VideoDiffusionDecoderModel` (test / bench reference) holding `state` (our names), matched
    through our key mapping; its default (flex attention) processor."""
    from diffusers import LTX2VideoDiffusionDecoderModel

    from videosdgx.ltx2.diffusion_decoder_files import diffusers_key

    with torch.device("meta"):
        model = LTX2VideoDiffusionDecoderModel(
            out_channels=cfg.out_channels, latent_channels=cfg.latent_channels, patch_size=cfg.patch_size,
            decoder_head_dim=cfg.head_dim, decoder_stage_channels=cfg.stage_channels,
            decoder_stage_depths=cfg.stage_depths, decoder_stage_kernels=cfg.stage_kernels,
            decoder_upsample_strides=tuple(s for s, _ in cfg.upsamples),
            decoder_upsample_channel_reductions=tuple(r for _, r in cfg.upsamples),
            decoder_stage5_kernel=cfg.stage5_kernel, decoder_t_emb_dim=cfg.t_emb_dim,
            decoder_timestep_scale_multiplier=cfg.timestep_scale, decoder_model_output_type=cfg.prediction,
            decoder_num_inference_steps=cfg.steps)
    theirs = {diffusers_key(k): k for k in model.state_dict()}
    if set(theirs) != set(state):
        raise KeyError(f"diffusers' names map to {sorted(set(theirs) ^ set(state))[:4]}... that ours lack or add")
    model.load_state_dict({theirs[k]: v for k, v in state.items()}, assign=True)
    assert not any(t.is_meta for t in model.state_dict().values())
    return model.eval()


def raw_decoder_tensors(state: dict[str, torch.Tensor], cfg: DiffusionDecoderConfig, seed: int = 0,
                        prefix: str = "vae.") -> dict[str, torch.Tensor]:
    """Our-names `state` in the release layout: the diffusion blocks' gates drawn at random and divided out of
    the weights they fold into (so loading folds them back), q/k/v fused, the timestep MLP renamed, a coarse head."""
    generator = torch.Generator().manual_seed(seed + 1)
    out = {}
    for b in range(cfg.stage_depths[-1]):
        for gate, owner in (("gate_msa", "attn.proj"), ("gate_mlp", "mlp.w_down"), ("gate_ctx", "context_proj")):
            block = f"diff_blocks.{b}."
            values = torch.rand(state[f"{block}{owner}.weight"].shape[0], generator=generator) + 0.5
            out[f"{block}{gate}"] = values
            for leaf in ("weight", "bias"):
                if f"{block}{owner}.{leaf}" in state:
                    weight = state[f"{block}{owner}.{leaf}"]
                    out[f"{block}{owner}.{leaf}"] = weight / values.reshape(-1, *([1] * (weight.ndim - 1)))
    for name, value in state.items():
        if name in out or name.startswith("latents_") or ".attn.qkv.to_k." in name or ".attn.qkv.to_v." in name:
            continue
        if ".attn.qkv.to_q." in name:
            head, leaf = name.split(".attn.qkv.to_q.")
            value = torch.cat([state[f"{head}.attn.qkv.to_{p}.{leaf}"] for p in "qkv"])
            name = f"{head}.attn.qkv.{leaf}"
        out[name.replace("t_embedder.timestep_embedder.linear_1.", "t_embedder.mlp.0.")
                .replace("t_embedder.timestep_embedder.linear_2.", "t_embedder.mlp.2.")] = value
    width = cfg.stage_channels[-1]
    out["coarse_head.weight"] = torch.randn(3 * cfg.patch_size ** 2, width, generator=generator)
    out["coarse_head.bias"] = torch.zeros(3 * cfg.patch_size ** 2)
    stats = {"mean-of-means": state["latents_mean"], "std-of-means": state["latents_std"]}
    stats |= {name: torch.rand(cfg.latent_channels, generator=generator) for name in EXTRA_STATS}
    return ({f"{prefix}decoder.{k}": v for k, v in out.items()}
            | {f"{prefix}per_channel_statistics.{k}": v for k, v in stats.items()})


def raw_vae_metadata(cfg: DiffusionDecoderConfig) -> dict[str, str]:
    """The header's `config.vae` as ltx-core reads it (decoder fields nested, `model_output_type` beside them)."""
    decoder = {"stage_channels": list(cfg.stage_channels), "stage_depths": list(cfg.stage_depths),
               "stage_kernels": [list(k) for k in cfg.stage_kernels],
               "upsamples": [[list(stride), reduction] for stride, reduction in cfg.upsamples],
               "stage5_kernel": list(cfg.stage5_kernel), "head_dim": cfg.head_dim, "t_emb_dim": cfg.t_emb_dim,
               "patch_size": cfg.patch_size, "out_channels": cfg.out_channels, "in_channels": cfg.latent_channels,
               "default_num_inference_steps": cfg.steps, "timestep_scale_multiplier": cfg.timestep_scale}
    vae = {"_class_name": "CausalDiffusionVAE", "latent_channels": cfg.latent_channels,
           "model_output_type": cfg.prediction, "decoder": decoder, "encoder": {"out_channels": cfg.latent_channels}}
    return {"config": json.dumps({"vae": vae})}


def write_diffusion_vae(path: Path, cfg: DiffusionDecoderConfig = TINY_DECODER, seed: int = 0,
                        prefixed: bool = True) -> Path:
    """`ltx-2.5-video-vae-*.safetensors`: the diffusion decoder (raw layout) + a tiny video encoder; `prefixed`
    False writes the bare-key split layout (`decoder.*`, `encoder.*`, `per_channel_statistics.*`)."""
    prefix = "vae." if prefixed else ""
    encoder = {k: v for k, v in video_vae_state("2.3", seed + 7, cfg.latent_channels, prefix).items()
               if k.startswith(f"{prefix}encoder.")}
    tensors = raw_decoder_tensors(decoder_state(cfg, seed), cfg, seed, prefix) | encoder
    return save_safetensors(path, tensors, metadata=raw_vae_metadata(cfg))
