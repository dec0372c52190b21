"""Tiny random Wan checkpoints in the exact published layouts, placed where a ComfyUI install keeps them.

The files carry the names of the manifest bundle of a variant, so the real lookup and loading code runs on them.
Sizes are toy (DiT width 256 with the real head size 128, UMT5 width 64, VAE base 8) and the weights are random:
a video made from them is noise.
"""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece
import torch

from videosdgx.bundle_files import find_bundle_files
from videosdgx.install.comfyui import model_folders
from videosdgx.manifest import load_manifest
from videosdgx.runtime.fp8 import quantize_fp8
from videosdgx.testing.files import random_like_state_dict, save_safetensors
from videosdgx.testing.lora import wan_lora_state
from videosdgx.text.t5 import T5Config, T5Encoder
from videosdgx.wan.clip_vision import ClipVisionConfig, ClipVisionEncoder
from videosdgx.wan.pipeline import WanFiles
from videosdgx.wan.transformer import WanConfig, WanModel
from videosdgx.wan.vae import WanVAE21, WanVAE21Config
from videosdgx.wan.vae22 import WanVAE22, WanVAE22Config
from videosdgx.wan.variants import wan_variant

TEXT_DIM = 64
CLIP_DIM = 160
CORPUS = [
    "a red fox running through snow", "a cat sits on a boat", "camera pans over a quiet harbour at sunset",
    "一只猫坐在冲浪板上", "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量",
    "ocean waves crash on the rocks", "a dog runs across a green field", "city street at night with neon lights",
]


def tiny_dit_config(task: str, vae: str, image_branch: bool) -> WanConfig:
    in_dim, out_dim = (48, 48) if vae == "2.2" else ((36 if task in ("i2v", "flf2v") else 16), 16)
    model_type = {"t2v": "t2v", "ti2v": "ti2v", "i2v": "i2v", "flf2v": "flf2v"}[task]
    return WanConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=2, in_dim=in_dim, out_dim=out_dim,
                     model_type=model_type, has_image_branch=image_branch, text_dim=TEXT_DIM, image_dim=CLIP_DIM)


def tiny_sentencepiece() -> bytes:
    """A small unigram SentencePiece model with T5 ids (pad 0, eos 1, unk 2, no BOS), trained here."""
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 30), model_writer=proto, vocab_size=120, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        normalization_rule_name="identity", minloglevel=2,
    )
    return proto.getvalue()


def _fp8_scaled(state: dict[str, torch.Tensor], quantize: callable) -> dict[str, torch.Tensor]:
    """ComfyUI `fp8_e4m3fn_scaled` layout: chosen Linear weights in fp8 + rank-0 `scale_weight`, plus the marker."""
    out = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if quantize(key, value):
            out[key], out[key.removesuffix("weight") + "scale_weight"] = quantize_fp8(value)
        else:
            out[key] = value
    return out


def _store(state: dict[str, torch.Tensor], filename: str) -> dict[str, torch.Tensor]:
    """Apply the storage dtype a published file name announces (fp16 / bf16 / fp8 scaled)."""
    if "fp8" in filename and "scaled" in filename:
        return _fp8_scaled(state, lambda key, value: value.ndim == 2 and ".weight" in key and "embed" not in key
                           and "shared" not in key and "relative_attention_bias" not in key)
    if "bf16" in filename:
        return {k: v.to(torch.bfloat16) for k, v in state.items()}
    if "fp16" in filename:
        return {k: v.to(torch.float16) for k, v in state.items()}
    return state


def _dit_state(cfg: WanConfig, seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        model = WanModel(cfg)
    return random_like_state_dict(model, seed, std=0.05)


def _text_encoder_state(seed: int) -> dict[str, torch.Tensor]:
    cfg = T5Config(vocab=128, d_model=TEXT_DIM, d_kv=16, heads=4, d_ff=128, layers=2)
    with torch.device("meta"):
        model = T5Encoder(cfg)
    state = random_like_state_dict(model, seed, std=0.2)
    state["spiece_model"] = torch.frombuffer(bytearray(tiny_sentencepiece()), dtype=torch.uint8)
    return state


def _vae_state(version: str, seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        if version == "2.2":
            model = WanVAE22(WanVAE22Config(dim=8, decoder_dim=16, z_dim=48, latents_mean=(0.0,) * 48,
                                            latents_std=(1.0,) * 48))
        else:
            model = WanVAE21(WanVAE21Config(dim=8, latents_mean=(0.0,) * 16, latents_std=(1.0,) * 16))
    return random_like_state_dict(model, seed, std=0.1)


def _clip_state(seed: int) -> dict[str, torch.Tensor]:
    cfg = ClipVisionConfig(image_size=224, patch_size=14, dim=CLIP_DIM, heads=2, layers=3, mlp_dim=320)
    with torch.device("meta"):
        model = ClipVisionEncoder(cfg)
    state = random_like_state_dict(model, seed, std=0.05)
    last = cfg.layers - 1  # files store every block; the model uses all but the last
    for key in [k for k in state if k.startswith("vision_model.encoder.layers.0.")]:
        state[key.replace("layers.0.", f"layers.{last}.")] = state[key].clone()
    return state


def _lora_state(cfg: WanConfig, seed: int) -> dict[str, torch.Tensor]:
    """A lightx2v-layout LoRA (low-rank pairs, bias / norm / modulation differences) for the tiny DiT."""
    with torch.device("meta"):
        model = WanModel(cfg)
    return wan_lora_state(model, "lightx2v", rank=4, seed=seed, std=0.02)[0]


def write_wan_bundle(bundle: str, models_dir: str | Path, seed: int = 0) -> None:
    """Write tiny random files for every file of a Wan manifest bundle under `models_dir/<folder>/<filename>`."""
    manifest = load_manifest()
    variant = wan_variant(manifest.bundle(bundle).variant)
    dit_cfg = tiny_dit_config(variant.task, variant.vae, variant.clip_vision)
    builders = {
        "dit": lambda: _dit_state(dit_cfg, seed),
        "dit_high": lambda: _dit_state(dit_cfg, seed),
        "dit_low": lambda: _dit_state(dit_cfg, seed + 1),
        "text_encoder": lambda: _text_encoder_state(seed + 10),
        "vae": lambda: _vae_state(variant.vae, seed + 20),
        "clip_vision": lambda: _clip_state(seed + 30),
        "lora": lambda: _lora_state(dit_cfg, seed + 40),
        "lora_low": lambda: _lora_state(dit_cfg, seed + 41),
    }
    for entry in manifest.bundle_entries(bundle):
        if entry.role not in builders:
            raise NotImplementedError(f"no tiny fixture for {entry.filename} ({entry.role})")
        save_safetensors(Path(models_dir) / entry.folder / entry.filename, _store(builders[entry.role](), entry.filename))


def write_wan_models(variant_name: str, models_dir: str | Path, seed: int = 0) -> WanFiles:
    """Tiny files of the variant's own bundle, as the pipeline's `WanFiles`."""
    write_wan_bundle(variant_name, models_dir, seed)
    return WanFiles.from_bundle(find_bundle_files(variant_name, model_folders(models_dir=Path(models_dir))))
