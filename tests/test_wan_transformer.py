"""Wan DiT: parity with diffusers `WanTransformer3DModel`, key mappings, variant detection, shared RoPE/sinusoid."""

import dataclasses

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from videosdgx.layers.embeddings import timestep_embedding
from videosdgx.layers.rope import apply_rope, rope_frequencies
from videosdgx.runtime.errors import CheckpointError, ConfigurationError, WrongComponentError
from videosdgx.wan.keys import (
    detect_dit_layout,
    from_diffusers_key,
    normalize_dit_state_dict_keys,
    to_diffusers_key,
    to_official_key,
)
from videosdgx.wan.transformer import (WAN_PRESETS, WanConfig, WanModel, config_from_shapes, heads_from_metadata,
                                       matching_presets)

TEXT_DIM, IMAGE_DIM, FREQ_DIM = 32, 24, 32
LATENT_T, LATENT_H, LATENT_W = 3, 6, 10  # grid 3 x 3 x 5: unequal axes catch h/w mix-ups


def tiny_config(model_type: str, num_heads: int, head_dim: int, has_image_branch: bool = False) -> WanConfig:
    in_dim = {"t2v": 16, "i2v": 36, "flf2v": 36, "ti2v": 48}[model_type]
    return WanConfig(
        dim=num_heads * head_dim, ffn_dim=96, num_heads=num_heads, num_layers=3, in_dim=in_dim,
        out_dim=48 if model_type == "ti2v" else 16, model_type=model_type, has_image_branch=has_image_branch,
        text_dim=TEXT_DIM, freq_dim=FREQ_DIM, image_dim=IMAGE_DIM,
    )


def diffusers_twin(cfg: WanConfig) -> WanTransformer3DModel:
    """The same architecture in diffusers, every parameter randomised (the default init zeroes proj_out etc.)."""
    torch.manual_seed(0)
    model = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps, image_dim=cfg.image_dim if cfg.has_image_branch else None,
        added_kv_proj_dim=cfg.dim if cfg.has_image_branch else None, rope_max_seq_len=cfg.rope_max_positions,
        pos_embed_seq_len=514 if cfg.model_type == "flf2v" else None,
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("scale_shift_table") or name.endswith("pos_embed"):
                param.copy_(torch.randn_like(param) * 0.3)
            elif param.ndim >= 2:
                param.copy_(torch.randn_like(param) / param[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.3 * torch.randn_like(param))
            else:
                param.copy_(0.3 * torch.randn_like(param))
    return model.eval()


def ours_from(reference: WanTransformer3DModel, cfg: WanConfig) -> WanModel:
    with torch.device("meta"):
        model = WanModel(cfg)
    state = {from_diffusers_key(key): value for key, value in reference.state_dict().items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def assert_close_to(reference: torch.Tensor, ours: torch.Tensor) -> None:
    assert ours.shape == reference.shape and ours.dtype == torch.float32
    scale = reference.abs().max().item()
    assert scale > 1e-2
    assert (ours - reference).abs().max().item() <= 1e-4 * scale


PARITY_CASES = {
    "t2v": dict(model_type="t2v", num_heads=2, head_dim=32),
    "i2v-clip": dict(model_type="i2v", num_heads=3, head_dim=24, has_image_branch=True),
    "i2v-no-clip": dict(model_type="i2v", num_heads=2, head_dim=16),
    "flf2v": dict(model_type="flf2v", num_heads=2, head_dim=12, has_image_branch=True),
    "ti2v": dict(model_type="ti2v", num_heads=4, head_dim=16),
}


@pytest.mark.parametrize("case", PARITY_CASES)
def test_parity_with_diffusers(case: str):
    cfg = tiny_config(**PARITY_CASES[case])
    reference = diffusers_twin(cfg)
    model = ours_from(reference, cfg)
    batch, latent = 2, 48 if case == "ti2v" else 16
    x = torch.randn(batch, latent, LATENT_T, LATENT_H, LATENT_W)
    y = torch.randn(batch, 20, LATENT_T, LATENT_H, LATENT_W) if cfg.in_dim == 36 else None
    text = torch.randn(batch, 7, TEXT_DIM)
    padded_text = torch.cat([text, torch.zeros(batch, 505, TEXT_DIM)], dim=1)  # the pipeline pads to exactly 512
    clip_fea = torch.randn(batch * (2 if case == "flf2v" else 1), 257, IMAGE_DIM) if cfg.has_image_branch else None
    if case == "ti2v":  # per-token timesteps: the first latent frame is clean
        tokens_per_frame = (LATENT_H // 2) * (LATENT_W // 2)
        t = torch.tensor([[0.0] * tokens_per_frame + [812.5] * 2 * tokens_per_frame,
                          [0.0] * tokens_per_frame + [301.25] * 2 * tokens_per_frame])
    else:
        t = torch.tensor([812.5, 301.25])

    with torch.no_grad():
        expected = reference(
            torch.cat([x, y], dim=1) if y is not None else x, t, padded_text,
            encoder_hidden_states_image=clip_fea, return_dict=False,
        )[0]
        out = model(x, t, text, clip_fea=clip_fea, y=y)
    assert_close_to(expected, out)


def test_per_token_timesteps_equal_to_scalar_timestep():
    cfg = tiny_config("ti2v", num_heads=4, head_dim=16)
    model = ours_from(diffusers_twin(cfg), cfg)
    x, text = torch.randn(1, 48, LATENT_T, LATENT_H, LATENT_W), torch.randn(1, 5, TEXT_DIM)
    tokens = LATENT_T * (LATENT_H // 2) * (LATENT_W // 2)
    with torch.no_grad():
        per_token = model(x, torch.full((1, tokens), 640.0), text)
        scalar = model(x, torch.tensor([640.0]), text)
    torch.testing.assert_close(per_token, scalar, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigurationError, match=r"\[batch, 45\]"):
        model(x, torch.full((1, tokens - 1), 640.0), text)


def test_bfloat16_weights_follow_float32():
    cfg = tiny_config("i2v", num_heads=3, head_dim=24, has_image_branch=True)
    model = ours_from(diffusers_twin(cfg), cfg)
    x, y = torch.randn(1, 16, LATENT_T, LATENT_H, LATENT_W), torch.randn(1, 20, LATENT_T, LATENT_H, LATENT_W)
    t, text, clip_fea = torch.tensor([700.0]), torch.randn(1, 9, TEXT_DIM), torch.randn(1, 257, IMAGE_DIM)
    with torch.no_grad():
        expected = model(x, t, text, clip_fea=clip_fea, y=y)
        out = model.bfloat16()(x, t, text, clip_fea=clip_fea, y=y)
    assert out.dtype == torch.float32
    assert (out - expected).abs().max() < 0.03 * expected.abs().max()


def test_bad_inputs_raise_clear_errors():
    cfg = tiny_config("i2v", num_heads=3, head_dim=24, has_image_branch=True)
    model = ours_from(diffusers_twin(cfg), cfg)
    x, y = torch.randn(1, 16, 1, 4, 4), torch.randn(1, 20, 1, 4, 4)
    t, text, clip_fea = torch.tensor([500.0]), torch.randn(1, 3, TEXT_DIM), torch.randn(1, 257, IMAGE_DIM)
    with pytest.raises(ConfigurationError, match="36 input channels"):
        model(x, t, text, clip_fea=clip_fea)
    with pytest.raises(ConfigurationError, match="CLIP image features"):
        model(x, t, text, y=y)
    with pytest.raises(ConfigurationError, match="at most 512 text tokens"):
        model(x, t, torch.randn(1, 513, TEXT_DIM), clip_fea=clip_fea, y=y)


def diffusers_twin_meta(cfg: WanConfig) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim, in_channels=cfg.in_dim,
        out_channels=cfg.out_dim, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers,
        image_dim=1280 if cfg.has_image_branch else None, added_kv_proj_dim=cfg.dim if cfg.has_image_branch else None,
        pos_embed_seq_len=514 if cfg.model_type == "flf2v" else None,
    )


def test_head_count_comes_from_the_metadata_when_the_file_states_it():
    cfg = tiny_config("t2v", num_heads=3, head_dim=32)
    with torch.device("meta"):
        shapes = {key: tuple(value.shape) for key, value in WanModel(cfg).state_dict().items()}
    assert config_from_shapes(shapes, heads_from_metadata({"config": '{"num_heads": 3}'})).num_heads == 3
    assert heads_from_metadata({"config": '{"num_attention_heads": 3}'}) == 3
    assert heads_from_metadata({"config": "not json"}) is None and heads_from_metadata(None) is None
    with pytest.raises(CheckpointError, match="96 wide, which is not a whole number of the released 128-wide heads"):
        config_from_shapes(shapes)
    with pytest.raises(CheckpointError, match="cannot split into 5 heads"):
        config_from_shapes(shapes, 5)


@pytest.mark.parametrize("name", WAN_PRESETS)
def test_real_size_presets_on_meta(name: str):
    cfg = WAN_PRESETS[name]
    with torch.device("meta"):
        model = WanModel(cfg)
        reference = diffusers_twin_meta(cfg)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert config_from_shapes(shapes) == cfg
    assert name in matching_presets(cfg)
    # our module tree is exactly the diffusers one under the key mapping, shape for shape
    reference_shapes = {from_diffusers_key(k): tuple(v.shape) for k, v in reference.state_dict().items()}
    assert reference_shapes == shapes
    # round trip official -> diffusers -> official on every key, with fp8 scale keys
    keys = list(shapes) + [key.replace(".weight", ".scale_weight") for key in shapes if key.endswith(".weight")]
    assert [from_diffusers_key(to_diffusers_key(key)) for key in keys] == keys
    assert {to_diffusers_key(key) for key in shapes} == set(reference.state_dict())


def test_preset_parameter_counts():
    def count(cfg: WanConfig) -> float:
        with torch.device("meta"):
            return sum(p.numel() for p in WanModel(cfg).parameters()) / 1e9

    assert 1.40 < count(WAN_PRESETS["wan2.1-t2v-1.3b"]) < 1.45
    assert 14.2 < count(WAN_PRESETS["wan2.1-t2v-14b"]) < 14.4
    assert 16.3 < count(WAN_PRESETS["wan2.1-i2v-14b"]) < 16.5
    assert 4.9 < count(WAN_PRESETS["wan2.2-ti2v-5b"]) < 5.1


def official_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {key: tuple(value.shape) for key, value in WanModel(WAN_PRESETS[name]).state_dict().items()}


@pytest.mark.parametrize(
    ("extra_key", "variant"),
    [
        ("vace_patch_embedding.weight", "Wan VACE"),
        ("vace_blocks.0.after_proj.bias", "Wan VACE"),
        ("control_adapter.conv.weight", "Wan Fun camera-control"),
        ("casual_audio_encoder.encoder.weight", "Wan S2V"),
        ("face_adapter.fuser_blocks.0.linear2.weight", "Wan Animate"),
        ("motion_encoder.dec.direction.weight", "Wan Animate"),
        ("audio_proj.proj.weight", "audio-driven Wan"),
    ],
)
def test_unsupported_variants_are_refused(extra_key: str, variant: str):
    shapes = official_shapes("wan2.1-t2v-1.3b") | {extra_key: (8,)}
    with pytest.raises(WrongComponentError, match=f"This is a {variant}.*does not support it yet"):
        config_from_shapes(shapes)


def test_non_wan_files_are_refused():
    with pytest.raises(WrongComponentError, match="not a Wan diffusion model.*'patch_embedding.weight'"):
        config_from_shapes({"decoder.middle.0.residual.0.gamma": (384, 1, 1, 1)})
    with pytest.raises(WrongComponentError, match="not a Wan diffusion model"):
        detect_dit_layout(["encoder.conv1.weight", "decoder.conv1.weight"])


def test_tiny_config_detected_with_its_head_dim():
    cfg = tiny_config("flf2v", num_heads=2, head_dim=12, has_image_branch=True)
    with torch.device("meta"):
        shapes = {key: tuple(value.shape) for key, value in WanModel(cfg).state_dict().items()}
    assert config_from_shapes(shapes, 2) == cfg


def test_config_rejects_inconsistent_image_branch():
    with pytest.raises(ConfigurationError, match="has_image_branch must be True"):
        dataclasses.replace(WAN_PRESETS["wan2.1-flf2v-14b"], has_image_branch=False)
    with pytest.raises(ConfigurationError, match="has_image_branch must be False"):
        dataclasses.replace(WAN_PRESETS["wan2.1-t2v-14b"], has_image_branch=True)


def test_layouts_and_key_normalisation():
    official = list(official_shapes("wan2.1-i2v-14b"))
    comfy = [f"model.diffusion_model.{key}" for key in official] + [
        "model.diffusion_model.scaled_fp8", "first_stage_model.decoder.conv1.weight"]
    diffusers = [to_diffusers_key(key) for key in official] + ["blocks.0.attn2.norm_added_q.weight"]
    assert detect_dit_layout(official) == "official"
    assert detect_dit_layout(comfy) == "comfyui"
    assert detect_dit_layout(diffusers) == "diffusers"
    assert normalize_dit_state_dict_keys(official) == {key: key for key in official}
    assert normalize_dit_state_dict_keys(comfy) == {key: f"model.diffusion_model.{key}" for key in official}
    assert normalize_dit_state_dict_keys(diffusers) == {key: to_diffusers_key(key) for key in official}
    assert to_diffusers_key("blocks.7.norm3.weight") == "blocks.7.norm2.weight"
    assert from_diffusers_key("blocks.7.norm2.bias") == "blocks.7.norm3.bias"
    assert to_diffusers_key("head.modulation") == "scale_shift_table"
    assert to_diffusers_key("blocks.3.modulation") == "blocks.3.scale_shift_table"
    assert to_diffusers_key("blocks.0.cross_attn.k_img.weight") == "blocks.0.attn2.add_k_proj.weight"


def test_fp8_scaled_keys():
    assert to_official_key("scaled_fp8", "official") is None
    assert to_official_key("blocks.0.self_attn.q.scale_input", "official") is None
    assert to_official_key("blocks.0.self_attn.q.scale_weight", "official") == "blocks.0.self_attn.q.scale_weight"
    comfy_scale = "model.diffusion_model.blocks.1.ffn.0.scale_weight"
    assert to_official_key(comfy_scale, "comfyui") == "blocks.1.ffn.0.scale_weight"
    assert to_official_key("model.diffusion_model.scaled_fp8", "comfyui") is None
    keys = ["scaled_fp8", "patch_embedding.weight", "head.head.weight", "head.head.scale_weight",
            "head.head.scale_input"]
    assert normalize_dit_state_dict_keys(keys) == {
        "patch_embedding.weight": "patch_embedding.weight",
        "head.head.weight": "head.head.weight",
        "head.head.scale_weight": "head.head.scale_weight",
    }


def test_timestep_embedding_matches_diffusers():
    t = torch.tensor([0.0, 1.0, 250.5, 999.0])
    for flip, shift in [(True, 0.0), (False, 1.0)]:
        ours = timestep_embedding(t, 256, flip_sin_to_cos=flip, downscale_freq_shift=shift)
        reference = get_timestep_embedding(t, 256, flip_sin_to_cos=flip, downscale_freq_shift=shift)
        assert ours.dtype == torch.float32 and ours.shape == (4, 256)
        assert (ours - reference).abs().max() < 2e-4
    emb = timestep_embedding(torch.tensor([[3.0, 7.0]]), 9)
    assert emb.shape == (1, 2, 9) and emb[0, 0, 0] == pytest.approx(torch.cos(torch.tensor(3.0)).item())
    assert emb[0, 1, 4] == pytest.approx(torch.sin(torch.tensor(7.0)).item()) and emb[0, 0, 8] == 0


def test_rope_matches_diffusers_and_complex_rotation():
    head_dim, grid = 24, (3, 4, 5)
    axes = (head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6))
    cos, sin = rope_frequencies(axes, grid)
    ref_cos, ref_sin = WanRotaryPosEmbed(head_dim, (1, 1, 1), 1024)(torch.zeros(1, 1, *grid))
    assert torch.equal(cos.repeat_interleave(2, -1), ref_cos[0, :, 0]) and torch.equal(
        sin.repeat_interleave(2, -1), ref_sin[0, :, 0])
    assert rope_frequencies(axes, grid)[0] is cos  # cached

    x = torch.randn(2, 3, 60, head_dim)
    angles = torch.complex(cos.double(), sin.double())
    expected = torch.view_as_real(torch.view_as_complex(x.double().unflatten(-1, (-1, 2))) * angles).flatten(-2)
    assert torch.allclose(apply_rope(x, (cos, sin)).double(), expected, atol=1e-5)
    assert apply_rope(x.bfloat16(), (cos, sin)).dtype == torch.bfloat16

    positions = torch.stack(torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij"), -1).reshape(-1, 3)
    explicit_cos, explicit_sin = rope_frequencies(axes, positions.float())
    assert torch.equal(explicit_cos, cos) and torch.equal(explicit_sin, sin)
