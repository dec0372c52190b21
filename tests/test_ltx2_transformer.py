"""LTX-2 AV DiT: parity with diffusers `LTX2VideoTransformer3DModel` (19B and 2.3 flags, T2V and per-token I2V
timesteps, every cross-modal timestep convention, STG and modality isolation), loading from the official layouts
(bf16 / fp8 / NVFP4, single file and split), and the refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from diffusers import LTX2VideoTransformer3DModel
from diffusers.models.transformers.transformer_ltx2 import LTX2AudioVideoRotaryPosEmbed

from videosdgx.ltx2.config import LTX2Config
from videosdgx.ltx2.keys import to_diffusers_key
from videosdgx.ltx2.loaders import load_dit, read_dit_config
from videosdgx.ltx2.rope import audio_positions, video_positions
from videosdgx.ltx2.transformer import LTX2Model, Modality, Perturbation
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import CheckpointError, ConfigurationError, WrongComponentError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.runtime.quantized_linear import QuantizedLinear
from videosdgx.testing.ltx2 import tiny_dit_config, write_ltx2_checkpoint

F32 = LoadRequest(dtype=torch.float32)
BATCH, FRAMES, HEIGHT, WIDTH, AUDIO_FRAMES, TEXT = 2, 3, 2, 3, 7, 5
FPS = 24.0


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module", params=["19B", "2.3", "19B-interleaved-fp32-grid"])
def models(request, tmp_path_factory):
    """(ours loaded from an fp32 official single file, the diffusers twin with the file's weights, config).
    The third flavour: interleaved RoPE and a float32 frequency grid (config keys the releases may omit)."""
    cfg = tiny_dit_config(request.param.split("-")[0])
    if request.param.endswith("fp32-grid"):
        cfg = dataclasses.replace(cfg, rope_type="interleaved", rope_float64=False)
    path = write_ltx2_checkpoint(tmp_path_factory.mktemp("ltx2") / "dit.safetensors", cfg, seed=3,
                                 dtype=torch.float32)
    ours = load_dit(path, F32).module
    with open_checkpoint(path) as checkpoint:
        weights = {to_diffusers_key(k.removeprefix("model.diffusion_model.")): checkpoint.get(k).clone()
                   for k in checkpoint.keys()}
    reference = diffusers_twin(cfg)
    reference.load_state_dict(weights, strict=True)
    return ours, reference, cfg


def diffusers_twin(cfg: LTX2Config) -> LTX2VideoTransformer3DModel:
    return LTX2VideoTransformer3DModel(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim, cross_attention_dim=cfg.cross_attention_dim, gated_attn=cfg.gated_attention,
        cross_attn_mod=cfg.cross_attention_adaln, audio_in_channels=cfg.audio_in_channels,
        audio_out_channels=cfg.audio_out_channels, audio_num_attention_heads=cfg.audio_num_heads,
        audio_attention_head_dim=cfg.audio_head_dim, audio_cross_attention_dim=cfg.audio_cross_attention_dim,
        audio_gated_attn=cfg.gated_attention, audio_cross_attn_mod=cfg.cross_attention_adaln,
        num_layers=cfg.num_layers, caption_channels=cfg.caption_channels or 0, rope_type=cfg.rope_type,
        rope_double_precision=cfg.rope_float64,
        cross_attn_timestep_scale_multiplier=cfg.av_ca_timestep_scale_multiplier,
        use_prompt_embeddings=cfg.caption_channels is not None, perturbed_attn=True,
        pos_embed_max_pos=cfg.max_pos[0], base_height=cfg.max_pos[1], base_width=cfg.max_pos[2],
        audio_pos_embed_max_pos=cfg.audio_max_pos[0],
    ).eval()


def inputs(cfg: LTX2Config, i2v: bool, seed: int = 5):
    """Random tokens and contexts; video and audio at different sigmas, I2V: the first latent frame clean."""
    g = torch.Generator().manual_seed(seed)
    tokens = FRAMES * HEIGHT * WIDTH
    video = torch.randn(BATCH, tokens, cfg.in_channels, generator=g)
    audio = torch.randn(BATCH, AUDIO_FRAMES, cfg.audio_in_channels, generator=g)
    video_context = torch.randn(BATCH, TEXT, cfg.caption_channels or cfg.dim, generator=g)
    audio_context = torch.randn(BATCH, TEXT, cfg.caption_channels or cfg.audio_dim, generator=g)
    sigma, audio_sigma = torch.tensor([0.7, 0.35]), torch.tensor([0.55, 0.9])
    timesteps = sigma[:, None].repeat(1, tokens)
    if i2v:
        timesteps[:, : HEIGHT * WIDTH] = 0.0
    audio_timesteps = audio_sigma[:, None].repeat(1, AUDIO_FRAMES)
    return dict(video=video, audio=audio, video_context=video_context, audio_context=audio_context, sigma=sigma,
                audio_sigma=audio_sigma, timesteps=timesteps, audio_timesteps=audio_timesteps)


def run_ours(model: LTX2Model, x: dict, perturbation: Perturbation | None = None):
    video = Modality(x["video"], x["timesteps"], x["sigma"], video_positions(FRAMES, HEIGHT, WIDTH, FPS, BATCH),
                     x["video_context"])
    audio = Modality(x["audio"], x["audio_timesteps"], x["audio_sigma"], audio_positions(AUDIO_FRAMES, BATCH),
                     x["audio_context"])
    with torch.no_grad():
        return model(video, audio, perturbation)


def run_reference(model: LTX2VideoTransformer3DModel, x: dict, use_cross_timestep: bool, **kwargs):
    with torch.no_grad():
        return model(
            hidden_states=x["video"], audio_hidden_states=x["audio"], encoder_hidden_states=x["video_context"],
            audio_encoder_hidden_states=x["audio_context"], timestep=x["timesteps"] * 1000,
            audio_timestep=x["audio_timesteps"] * 1000, sigma=x["sigma"] * 1000, audio_sigma=x["audio_sigma"] * 1000,
            num_frames=FRAMES, height=HEIGHT, width=WIDTH, fps=FPS, audio_num_frames=AUDIO_FRAMES,
            use_cross_timestep=use_cross_timestep, return_dict=False, **kwargs,
        )


@pytest.mark.parametrize("i2v", [False, True], ids=["t2v", "i2v"])
@pytest.mark.parametrize("mode", ["own", "cross"])
def test_parity_with_diffusers(models, mode, i2v):
    ours, reference, cfg = models
    ours.cross_timestep = mode
    x = inputs(cfg, i2v)
    video, audio = run_ours(ours, x)
    ref_video, ref_audio = run_reference(reference, x, use_cross_timestep=mode == "cross")
    assert rel(video, ref_video) < 1e-4 and rel(audio, ref_audio) < 1e-4
    # The conventions really differ for these inputs (the comparison above is not vacuous).
    other_video, other_audio = run_reference(reference, x, use_cross_timestep=mode != "cross")
    assert rel(video, other_video) > 1e-3 and rel(audio, other_audio) > 1e-3


def test_mixed_convention_is_own_scale_shift_and_cross_gate(models):
    """Lightricks' current code: cross-modal scale/shift from the own per-token timesteps, the gate from the other
    modality's sigma. diffusers has no such flag, so its gate embedders are fed the other sigma by hand."""
    ours, reference, cfg = models
    ours.cross_timestep = "mixed"
    x = inputs(cfg, i2v=True)
    gate_inputs = {"av_cross_attn_video_a2v_gate": x["audio_sigma"], "av_cross_attn_audio_v2a_gate": x["sigma"]}
    originals = {}
    for name, sigma in gate_inputs.items():
        module = getattr(reference, name)
        originals[name] = module.forward
        scale = cfg.av_ca_timestep_scale_multiplier
        module.forward = lambda t, *a, _f=module.forward, _s=sigma, **k: _f(_s * scale, *a, **k)
    try:
        ref_video, ref_audio = run_reference(reference, x, use_cross_timestep=False)
    finally:
        for name, forward in originals.items():
            getattr(reference, name).forward = forward
    video, audio = run_ours(ours, x)
    assert rel(video, ref_video) < 1e-4 and rel(audio, ref_audio) < 1e-4


def test_stg_and_modality_isolation_match_diffusers(models):
    ours, reference, cfg = models
    ours.cross_timestep = "cross"
    x = inputs(cfg, i2v=False)
    keep = torch.tensor([1.0, 0.0])
    video, audio = run_ours(ours, x, Perturbation(stg_blocks=(1,), stg_keep=keep))
    ref_video, ref_audio = run_reference(reference, x, True, spatio_temporal_guidance_blocks=[1],
                                         perturbation_mask=keep)
    assert rel(video, ref_video) < 1e-4 and rel(audio, ref_audio) < 1e-4
    video, audio = run_ours(ours, x, Perturbation(av_keep=torch.zeros(BATCH)))
    ref_video, ref_audio = run_reference(reference, x, True, isolate_modalities=True)
    assert rel(video, ref_video) < 1e-4 and rel(audio, ref_audio) < 1e-4


def test_positions_match_diffusers():
    rope = LTX2AudioVideoRotaryPosEmbed(dim=16, modality="video")
    expected = rope.prepare_video_coords(2, 4, 3, 5, torch.device("cpu"), fps=25.0)
    assert torch.allclose(video_positions(4, 3, 5, 25.0, 2), expected)
    audio_rope = LTX2AudioVideoRotaryPosEmbed(dim=16, modality="audio", scale_factors=[4])
    assert torch.allclose(audio_positions(9, 2), audio_rope.prepare_audio_coords(2, 9, torch.device("cpu")))


@pytest.mark.parametrize("quantization", ["fp8", "nvfp4"])
def test_quantized_files_stay_quantized_and_match_dequantized_weights(tmp_path, quantization):
    cfg = tiny_dit_config("19B")
    path = write_ltx2_checkpoint(tmp_path / f"{quantization}.safetensors", cfg, quantization=quantization)
    model = load_dit(path, F32).module
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert len(quantized) == cfg.num_layers * (6 * 4 + 4) and {m.format for m in quantized} == {quantization}
    dense = LTX2Model(cfg)
    state = model.state_dict()
    weights = {}
    for name, tensor in state.items():
        owner = name.rpartition(".")[0]
        layer = model.get_submodule(owner) if owner else model
        if isinstance(layer, QuantizedLinear):
            if name.endswith(".weight"):
                weights[name] = layer.dequantized_weight(torch.float32)
            elif name.endswith(".bias"):
                weights[name] = tensor
        else:
            weights[name] = tensor
    dense.load_state_dict(weights)
    x = inputs(cfg, i2v=True)
    for got, expected in zip(run_ours(model, x), run_ours(dense.eval(), x)):
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_split_transformer_file_loads(tmp_path):
    cfg = tiny_dit_config("2.3")
    path = write_ltx2_checkpoint(tmp_path / "transformer_only.safetensors", cfg, prefixed=False)
    loaded = load_dit(path, F32, expected_version="2.3")
    assert loaded.identity.component == "transformer" and loaded.module.cfg == cfg
    assert read_dit_config(path) == cfg


def test_file_without_config_metadata_is_refused(tmp_path):
    path = write_ltx2_checkpoint(tmp_path / "stripped.safetensors", tiny_dit_config(), with_config=False)
    with pytest.raises(CheckpointError, match="no embedded LTX-2 `config` metadata.*official Lightricks single file"):
        load_dit(path, F32)


@pytest.mark.parametrize("stored,expected", [("2.3", "19B"), ("19B", "2.3")])
def test_wrong_release_is_refused(tmp_path, stored, expected):
    path = write_ltx2_checkpoint(tmp_path / "dit.safetensors", tiny_dit_config(stored))
    names = {"19B": "LTX-2 19B", "2.3": "LTX-2.3 22B"}
    with pytest.raises(WrongComponentError, match=f"is an {names[stored]} checkpoint, but the ltx-x variant needs "
                                                  f"{names[expected]}"):
        load_dit(path, F32, expected_version=expected, variant="ltx-x")


def test_unsupported_config_is_refused(tmp_path):
    path = write_ltx2_checkpoint(tmp_path / "dit.safetensors", tiny_dit_config())
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    with open_checkpoint(path) as checkpoint:
        config = json.loads(checkpoint.metadata["config"])
    config["transformer"]["activation_fn"] = "swiglu"
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})
    with pytest.raises(CheckpointError, match="activation_fn = 'swiglu'.*does not run"):
        load_dit(path, F32)


def test_bad_timesteps_shape_is_refused():
    cfg = tiny_dit_config()
    with torch.device("meta"):
        model = LTX2Model(cfg)
    x = inputs(cfg, i2v=False)
    x["timesteps"] = x["timesteps"][:, :5]
    with pytest.raises(ConfigurationError, match=r"video timesteps must be \[batch, 1\] or \[batch, 18\]"):
        run_ours(model, x)
