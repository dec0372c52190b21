"""Tiny MAGI-1 model files in the official layouts (magi1.md §2, §9), for tests and `--demo`.

`write_magi1_bundle` writes every file of a manifest bundle where the real lookup finds it: the DiT as two
safetensors shards + `model.safetensors.index.json` (in the fp8 release's layout for an fp8 bundle; with the
installer's record for a folder entry), the VAE as `config.json` + safetensors, the T5 v1.1 encoder as
DeepFloyd's two `.bin` shards + index with its tokenizer files, and `special_tokens.npz`. Weights are random: a
video made from them is noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from videosdgx.magi1.config import MagiDiTConfig
from videosdgx.magi1.transformer import MagiDiT
from videosdgx.magi1.vae import MagiVAE, MagiVAEConfig
from videosdgx.manifest import load_manifest
from videosdgx.testing.files import random_like_state_dict, save_folder_entry, save_safetensors, save_sharded
from videosdgx.text.t5 import T5Config, T5Encoder

CAPTION_DIM = 32  # the tiny T5's width


def tiny_dit_config(style: str = "4.5B", layers: int = 2) -> MagiDiTConfig:
    """Width 128, 8 query heads over 2 KV groups of 16; "24B" adds SwiGLU, 32 input channels, x0.1."""
    common = dict(layers=layers, dim=128, ffn_dim=256, heads=8, kv_heads=2, head_dim=16, caption_dim=CAPTION_DIM,
                  caption_length=800, cond_dim=32)
    if style == "24B":
        return MagiDiTConfig(**common, in_channels=32, out_channels=32, gated_mlp=True, x_rescale=0.1)
    return MagiDiTConfig(**common)


def dit_state(cfg: MagiDiTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random DiT weights under the official key names (norm weights non-zero, so the +1 is exercised)."""
    with torch.device("meta"):
        module = MagiDiT(cfg)
    return random_like_state_dict(module, seed, std=0.2)


def dit_inputs(seed: int, chunks: int) -> dict[str, torch.Tensor]:
    """Seeded inputs of a 4-chunk tiny DiT forward in the reference's layout: latent `x [1,16,2n,8,8]`, `t [1,n]`,
    captions `y [n,1,800,32]` and masks `[n,1,800]` of distinct lengths (one full, one a single token)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 800, 1, 33, 50, 12][:chunks])
    mask = (torch.arange(800)[None] < lengths[:, None]).float()
    return {
        "x": torch.randn(1, 16, 2 * chunks, 8, 8, generator=g),
        "t": torch.rand(1, chunks, generator=g),
        "y": torch.randn(chunks, 1, 800, CAPTION_DIM, generator=g),
        "mask": mask[:, None],
    }


TINY_VAE = MagiVAEConfig(video_size=16, video_length=8, patch_size=8, patch_length=4, z_chans=16, embed_dim=256,
                         depth=2, num_heads=4)


def tiny_vae_ddconfig() -> dict:
    """The tiny VAE's `ddconfig` with the released model's switches (magi1.md §5)."""
    c = TINY_VAE
    return dict(video_size=c.video_size, video_length=c.video_length, patch_size=c.patch_size,
                patch_length=c.patch_length, in_chans=3, z_chans=c.z_chans, double_z=True, embed_dim=c.embed_dim,
                depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=True, with_cls_token=True,
                norm_code=False, ln_in_attn=True, conv_last_layer=True, use_rope=False, use_final_proj=False)


def vae_state(seed: int = 0) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        module = MagiVAE(TINY_VAE)
    return random_like_state_dict(module, seed, std=0.05)


def special_tokens_arrays(dim: int = CAPTION_DIM, seed: int = 0) -> dict:
    """`special_tokens.npz` contents at width `dim` (the release: 4096), float64 as published."""
    rng = np.random.default_rng(seed)
    return {"caption_token": rng.standard_normal((1, dim)), "logo_token": rng.standard_normal((1, dim)),
            "other_tokens": rng.standard_normal((100, dim))}


def pipeline_inputs(prefix_frames: int = 0) -> dict:
    """A 2-chunk tiny generation (16 frames of 64x64, chunk width 2): caption `[1, 1, 800, 32]` with 9 valid
    tokens, its mask, an optional clean latent prefix `[1, 16, P, 8, 8]`, and the noise seed."""
    g = torch.Generator().manual_seed(11)
    caption = torch.randn(1, 1, 800, CAPTION_DIM, generator=g)
    mask = (torch.arange(800) < 9).long()[None]
    prefix = torch.randn(1, 16, prefix_frames, 8, 8, generator=g) if prefix_frames else None
    return {"caption": caption, "mask": mask, "prefix": prefix, "seed": 7}


TINY_T5 = T5Config(vocab=128, d_model=CAPTION_DIM, d_kv=8, heads=4, d_ff=64, layers=2, per_layer_position_bias=False)


def t5_state(seed: int = 0) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        module = T5Encoder(TINY_T5)
    state = random_like_state_dict(module, seed, std=0.2)
    state["encoder.embed_tokens.weight"] = state["shared.weight"]  # DeepFloyd's files carry both names
    return state


def t5_hf_config() -> dict:
    """The tiny encoder's transformers `T5Config` fields (T5 v1.1: gated GELU, untied, no biases)."""
    c = TINY_T5
    return {"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": c.vocab, "d_model": c.d_model,
            "d_kv": c.d_kv, "d_ff": c.d_ff, "num_layers": c.layers, "num_heads": c.heads,
            "relative_attention_num_buckets": c.buckets, "relative_attention_max_distance": c.max_distance,
            "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": c.eps, "tie_word_embeddings": False,
            "dropout_rate": 0.0, "is_encoder_decoder": False}


def _save_bin_shards(folder: Path, tensors: dict[str, torch.Tensor], names: list[str]) -> None:
    """DeepFloyd's layout: `pytorch_model-0000i-of-0000n.bin` (pickled state dicts) + their index."""
    keys, weight_map = list(tensors), {}
    for i, name in enumerate(names):
        part = {k: tensors[k].clone() for k in keys[i::len(names)]}
        torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_magi1_bundle(bundle: str, models_dir: str | Path, seed: int = 0) -> Path:
    """Tiny random files for every entry of a MAGI-1 manifest bundle (the family registry's `demo` hook)."""
    from videosdgx.magi1.variants import MAGI1_VARIANTS
    from videosdgx.testing.wan import tiny_sentencepiece

    manifest = load_manifest()
    found = manifest.bundle(bundle)
    variant = MAGI1_VARIANTS[found.variant or found.name]
    models_dir = Path(models_dir)
    entries = [manifest.entry(e) for e in found.entries]
    by_role: dict[str, list] = {}
    for entry in entries:
        by_role.setdefault(entry.role, []).append(entry)
    path = lambda entry: models_dir / entry.folder / entry.filename  # noqa: E731

    dit = by_role["dit"][0]
    fp8 = "fp8" in dit.filename  # the fp8 release: layers 1..N-2 in float8, so at least 3 layers
    state = (fp8_dit_state if fp8 else dit_state)(tiny_dit_config(variant.size, layers=3 if fp8 else 2), seed)
    if dit.is_folder:  # listed on the Hub at install time: the installer's layout, index + shards
        save_folder_entry(models_dir, dit, state, shards=2, stem="model")
    else:
        save_sharded(path(by_role["dit_index"][0]).parent, state, len(by_role["dit"]), stem="model")
    vae_config = path(by_role["vae_config"][0])
    vae_config.parent.mkdir(parents=True, exist_ok=True)
    vae_config.write_text(json.dumps({"_class_name": "ViTVAE", "model_type": "vit", "ddconfig": tiny_vae_ddconfig()}))
    save_safetensors(path(by_role["vae"][0]), vae_state(seed + 1))

    t5_index = path(by_role["text_encoder_index"][0])
    t5_index.parent.mkdir(parents=True, exist_ok=True)
    _save_bin_shards(t5_index.parent, t5_state(seed + 2), [path(e).name for e in by_role["text_encoder"]])
    path(by_role["text_encoder_config"][0]).write_text(json.dumps(t5_hf_config()))
    for entry in by_role["tokenizer"]:
        target = path(entry)
        if target.name == "spiece.model":
            target.write_bytes(tiny_sentencepiece())
        else:
            target.write_text(json.dumps({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    npz = path(by_role["special_tokens"][0])
    npz.parent.mkdir(parents=True, exist_ok=True)
    with open(npz, "wb") as f:
        np.savez(f, **special_tokens_arrays(seed=seed))
    return models_dir


def fp8_dit_state(cfg: MagiDiTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """`dit_state` in the fp8 release's layout: the big Linears of layers 1..N-2 as e4m3 `[1, out, in]` with
    `weight_scale`, `input_scale` ([in] per-tensor form, [1] smoothed form) and `smooth_scale` (smoothed)."""
    state = dit_state(cfg, seed)
    g = torch.Generator().manual_seed(seed + 100)
    smooth = ("self_attention.linear_proj", "mlp.linear_fc2")
    plain = ("self_attention.linear_qkv.q", "self_attention.linear_qkv.qx", "self_attention.linear_qkv.k",
             "self_attention.linear_qkv.v", "mlp.linear_fc1")
    for layer in range(1, cfg.layers - 1):
        for name in plain + smooth:
            key = f"videodit_blocks.layers.{layer}.{name}"
            w = state.pop(f"{key}.weight")
            scale = w.abs().amax() / 448
            state[f"{key}.weight"] = (w / scale).to(torch.float8_e4m3fn)[None]
            state[f"{key}.weight_scale"] = scale.reshape(1)
            if name in smooth:
                state[f"{key}.input_scale"] = torch.rand(1, generator=g) * 0.02 + 0.01
                state[f"{key}.smooth_scale"] = torch.rand(1, w.shape[1], generator=g) * 0.02 + 0.01
            else:
                state[f"{key}.input_scale"] = torch.rand(w.shape[1], generator=g) * 0.02 + 0.01
    return state
