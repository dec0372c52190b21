"""Write the MAGI-1 reference tensors of tests/reference/magi1 by running the official modules on CPU.

Run outside the test suite (see README.md here): it imports SandAI-org/MAGI-1 from $MAGI1_SRC through
/work/shared/reference/magi1_cpu_stubs.py (on PYTHONPATH). Weights are the seeded tiny fixtures of
videosdgx.testing.magi1, so the tests rebuild the same models without storing weights here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import magi1_cpu_stubs  # noqa: F401  (must come before any official import)
import torch
from safetensors.torch import save_file

from inference.common import EngineConfig, InferenceParams, MagiConfig, ModelConfig, RuntimeConfig
from inference.model.dit.dit_model import VideoDiTModel
from videosdgx.testing.magi1 import dit_inputs, dit_state, fp8_dit_state, tiny_dit_config, tiny_vae_ddconfig, vae_state

OUT = Path(__file__).parent
torch.Tensor.cuda = lambda self, *a, **k: self  # the KV cache moves rows with .cuda()


def official_dit(style: str, distill: bool, steps: int = 8, cfg_number: int = 1, fp8: bool = False) -> VideoDiTModel:
    cfg = tiny_dit_config(style, layers=4 if fp8 else 2)
    model_config = ModelConfig(
        model_name="videodit_ardf", num_layers=cfg.layers, hidden_size=cfg.dim, ffn_hidden_size=cfg.ffn_dim,
        num_attention_heads=cfg.heads, num_query_groups=cfg.kv_heads, kv_channels=cfg.head_dim,
        layernorm_epsilon=cfg.eps, apply_layernorm_1p=True, x_rescale_factor=cfg.x_rescale,
        half_channel_vae=cfg.half_channel_vae, params_dtype=torch.float32, patch_size=cfg.patch,
        t_patch_size=cfg.t_patch, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        cond_hidden_ratio=cfg.cond_dim / cfg.dim, caption_channels=cfg.caption_dim,
        caption_max_length=cfg.caption_length, gated_linear_unit=cfg.gated_mlp,
    )
    runtime = RuntimeConfig(cfg_number=cfg_number, prev_chunk_scales=[1.5, 1.5, 1.5, 1.0, 1.0],
                            text_scales=[7.5, 7.5, 7.5, 0.0, 0.0], noise2clean_kvrange=[5, 4, 3, 2],
                            clean_chunk_kvrange=1, clean_t=0.9999, num_steps=steps, chunk_width=2, window_size=4)
    engine = EngineConfig(distill=distill, kv_offload=False, fp8_quant=fp8)
    model = VideoDiTModel(MagiConfig(model_config, runtime, engine))
    model.load_state_dict(fp8_dit_state(cfg) if fp8 else dit_state(cfg), strict=True)
    return model.eval()


def kv_tokens(ranges, tokens=32) -> torch.Tensor:
    return torch.tensor(ranges, dtype=torch.int32) * tokens


def run(model, inp, ranges, slice_point=0, drop=False, params=None, **kw):
    n = inp["t"].shape[1]
    kwargs = dict(range_num=slice_point + n, denoising_range_num=n, slice_point=slice_point,
                  fwd_extra_1st_chunk=kw.pop("fwd_extra_1st_chunk", False), num_steps=8, chunk_width=2, **kw)
    with torch.no_grad():
        return model(inp["x"], inp["t"], inp["y"], caption_dropout_mask=torch.tensor([drop]), xattn_mask=inp["mask"],
                     kv_range=kv_tokens(ranges), inference_params=params, **kwargs)


def dit_cases() -> None:
    ranges = [(0, 1), (0, 2), (0, 3), (1, 4)]
    base = official_dit("4.5B", distill=False)
    inp = dit_inputs(1, 4)
    save_file({"out": run(base, inp, ranges)}, OUT / "dit_45b.safetensors")

    distill = official_dit("24B", distill=True)
    inp = dit_inputs(2, 4)
    save_file({"out": run(distill, inp, ranges, drop=True)}, OUT / "dit_24b_distill.safetensors")

    # cached: chunks 0-1 write the cache (clean-chunk style), then chunks 2-3 read it
    inp = dit_inputs(3, 4)
    params = InferenceParams(max_batch_size=1, max_sequence_length=4 * 32)
    params.update_kv_cache = True
    first = {"x": inp["x"][:, :, :4], "t": inp["t"][:, :2], "y": inp["y"][:2], "mask": inp["mask"][:2]}
    run(base, first, [(0, 1), (0, 2)], params=params, extract_prefix_video_feature=True)
    params.update_kv_cache = False
    second = {"x": inp["x"][:, :, 4:], "t": inp["t"][:, 2:], "y": inp["y"][2:], "mask": inp["mask"][2:]}
    out = run(base, second, [(0, 3), (1, 4)], slice_point=2, params=params)
    save_file({"out": out}, OUT / "dit_45b_cached.safetensors")

    fp8 = official_dit("4.5B", distill=True, fp8=True)  # layers 1 and 2 of 4 stored in fp8
    save_file({"out": run(fp8, dit_inputs(4, 4), ranges).float()}, OUT / "dit_45b_fp8.safetensors")


def vae_cases() -> None:
    from inference.infra.parallelism.tile_parallel import TileProcessor
    from inference.model.vae.vae_model import ViTVAE
    from inference.model.vae.vae_module import DiagonalGaussianDistribution

    torch.Tensor.bfloat16 = lambda self, *a, **k: self  # the official attention casts q/k/v to bf16; keep fp32
    torch.compile = lambda fn, **kw: fn
    vae = ViTVAE(ddconfig=tiny_vae_ddconfig()).eval()
    vae.load_state_dict(vae_state(), strict=True)
    g = torch.Generator().manual_seed(5)
    video = torch.rand(1, 3, 8, 40, 40, generator=g) * 2 - 1
    z = torch.randn(1, 16, 3, 5, 5, generator=g)

    def encode(x):  # the pipeline's deterministic encode (VaeHelper.patch_vae_encode): posterior mode
        if x.shape[2] == 1:
            return DiagonalGaussianDistribution(vae.encoder(x.expand(-1, -1, 4, -1, -1))).mode()[:, :, :1]
        return DiagonalGaussianDistribution(vae.encoder(x)).mode()

    tiles = dict(tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_min_length=4,
                 spatial_tile_overlap_factor=0.25, temporal_tile_overlap_factor=0.0, spatial_downsample_factor=8,
                 temporal_downsample_factor=4)
    with torch.no_grad():
        out = {
            "encode": encode(video),
            "encode_image": encode(video[:, :, :1]),
            "decode": vae.decode(z[:, :, :2, :3, :3]),
            "decode_frame": vae.decode(z[:, :, :1, :3, :3]),
            "tiled_encode": TileProcessor(encode, vae.decode, **tiles).tiled_encode(video),
            "tiled_decode": TileProcessor(encode, vae.decode, **{**tiles, "tile_sample_min_length": 8}).tiled_decode(z),
        }
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "vae.safetensors")


PIPELINE_CASES = {  # name: (variant style, distill, prefix latent frames)
    "pipeline_base": ("4.5B", False, 0),
    "pipeline_distill": ("4.5B", True, 0),
    "pipeline_distill_i2v": ("4.5B", True, 1),
    "pipeline_base_v2v": ("4.5B", False, 3),
}


def pipeline_cases() -> None:
    import os
    import tempfile
    import types

    import numpy as np

    from videosdgx.testing.magi1 import pipeline_inputs, special_tokens_arrays

    for name in ("ftfy", "bs4", "ffmpeg"):  # imported by official modules, unused here (captions are given)
        sys.modules[name] = types.SimpleNamespace(fix_text=str, BeautifulSoup=None)
    to = torch.Tensor.to
    torch.Tensor.to = lambda self, *a, **k: to(self, *["cpu" if isinstance(x, str) and x.startswith("cuda") else x
                                                      for x in a], **k)  # official code names "cuda:<device>"
    torch.cuda.synchronize = lambda *a: None
    npz = Path(tempfile.mkdtemp()) / "special_tokens.npz"
    np.savez(npz, **special_tokens_arrays())
    os.environ.update(PAD_HQ="1", PAD_DURATION="1", SPECIAL_TOKEN_PATH=str(npz))
    from inference.pipeline.video_generate import SampleTransport, extract_feature_for_inference

    out = {}
    for name, (style, distill, prefix_frames) in PIPELINE_CASES.items():
        model = official_dit(style, distill, steps=8, cfg_number=1 if distill else 3)
        model.runtime_config.num_frames, model.runtime_config.video_size_h = 16, 64
        model.runtime_config.video_size_w = 64
        inp = pipeline_inputs(prefix_frames)
        features = extract_feature_for_inference(model, inp["prefix"], inp["caption"], inp["mask"])
        torch.manual_seed(inp["seed"])
        with torch.no_grad():
            chunks = [c for _, _, c in SampleTransport(model, [features], device="cpu").walk()]
        out[name] = torch.cat(chunks, dim=2)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "pipeline.safetensors")


CAPTIONS = [
    "A Red Fox  running, https://x.com/a <b>bold</b> @user 中文 “quoted” jc6640", "this-is-my-cute-cat-ok", "Good Boy",
    "Free shipping! Click for details: 1920x1080 img.png #12 page 3",
    "\"A dog's day\" -- runs... across the   FIELD!!!", "caf\u00e9 &amp; bar &quot;x&quot; 192.168.0.1 <p>para</p>",
    "A woman (smiling) [walks] {slowly} | through *rain* / at 12:30  ", "  'quoted caption'  ",
    "3D render of a 2D anime girl, 4k, 8K",
]


def captions_cases() -> None:
    """The official caption cleaning (needs ftfy and beautifulsoup4 importable)."""
    import json
    import types

    from inference.model.t5.t5_model import T5Embedder

    embedder = types.SimpleNamespace(use_text_preprocessing=True, clean_caption=lambda c: T5Embedder.clean_caption(
        T5Embedder, c))
    cleaned = {c: T5Embedder.text_preprocessing(embedder, c) for c in CAPTIONS}
    (OUT / "captions.json").write_text(json.dumps(cleaned, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    torch.manual_seed(0)
    for name in sys.argv[1:] or ["dit"]:
        globals()[f"{name}_cases"]()
