"""Checkpoint identification from key names and shapes, and the `videosdgx inspect` command."""

import pytest
import torch

from videosdgx.cli import main
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import CheckpointError, WrongComponentError
from videosdgx.runtime.identify import expect, identify, identify_keys
from videosdgx.testing import layouts
from videosdgx.testing.files import save_safetensors


def ident(sd):
    return identify_keys({k: tuple(v.shape) for k, v in sd.items()}, {k: v.dtype for k, v in sd.items()})


def test_ltx2_single_file_and_successor():
    found = ident(layouts.ltx2_checkpoint(blocks=2))
    assert (found.family, found.component, found.layout) == ("ltx2", "checkpoint", "official single file")
    assert "video VAE" in found.notes[0] and "vocoder" in found.notes[0]
    assert ident(layouts.ltx2_checkpoint(gated=True)).variant.startswith("LTX-2.3")


def test_ltx2_upsampler():
    assert ident(layouts.ltx2_upsampler()).component == "latent upsampler"


def test_magi1_sizes_and_fp8():
    assert ident(layouts.magi1_dit(3072)).variant == "MAGI-1 4.5B"
    assert ident(layouts.magi1_dit(6144)).variant == "MAGI-1 24B"
    fp8 = ident(layouts.magi1_dit(3072, fp8=True))
    assert fp8.variant == "MAGI-1 4.5B fp8" and fp8.quantization == "fp8 (unscaled cast)"


def test_gemma3_comfy_layout():
    found = ident(layouts.gemma3_comfy())
    assert found.variant == "Gemma 3 (2 layers)" and found.layout == "ComfyUI"


def test_t5_vs_umt5_by_position_bias_per_layer():
    base = {"shared.weight": torch.zeros(8, 4)}
    for i in range(3):
        base[f"encoder.block.{i}.layer.0.SelfAttention.q.weight"] = torch.zeros(4, 4)
    t5 = dict(base, **{"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": torch.zeros(32, 2)})
    umt5 = dict(t5, **{"encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight": torch.zeros(32, 2)})
    assert ident(t5).variant == "T5 (3 layers)" and ident(umt5).variant == "UMT5 (3 layers)"


def test_unknown_file_names_closest_known_key():
    sd = {"model.diffusion_model.av_ca_a2v_gate_adaln_singl.emb.timestep_embedder.linear_1.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match="Closest match.*LTX-2 checkpoint"):
        ident(sd)


def test_unknown_file_with_nothing_close():
    with pytest.raises(CheckpointError, match="not a model VideosDGX knows"):
        ident({"foo": torch.zeros(1)})


def test_expect_refuses_other_component_and_names_loader():
    found = ident(layouts.magi1_dit())
    with pytest.raises(WrongComponentError, match="is a MAGI-1 4.5B transformer.*load it with the MAGI-1 pipeline"):
        expect(found, "wan", "VAE", "magi.safetensors", "the Wan VAE Loader")


def test_parameters_and_bytes_reported(tmp_path):
    sd = layouts.gemma3_comfy()
    path = save_safetensors(tmp_path / "gemma.safetensors", sd)
    with open_checkpoint(path) as ckpt:
        found = identify(ckpt)
    assert found.parameters == sum(v.numel() for v in sd.values())
    assert found.nbytes == sum(v.numel() * 4 for v in sd.values()) and found.dtype == "float32"


def test_inspect_command_reports_each_file(tmp_path, capsys):
    good = save_safetensors(tmp_path / "ltx.safetensors", layouts.ltx2_checkpoint())
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(good.read_bytes()[:-10])
    assert main(["inspect", str(good)]) == 0
    assert "LTX-2" in capsys.readouterr().out
    assert main(["inspect", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "cut.safetensors: UNUSABLE" in out and "truncated" in out


def meta_state(module_factory):
    with torch.device("meta"):
        module = module_factory()
    return {k: v for k, v in module.state_dict().items()}


@pytest.mark.parametrize("preset, variant", [
    ("wan2.1-t2v-1.3b", "Wan2.1 T2V-1.3B"),
    ("wan2.1-t2v-14b", "Wan2.1 T2V-14B or Wan2.2 T2V-A14B expert"),
    ("wan2.1-i2v-14b", "Wan2.1 I2V-14B"),
    ("wan2.1-flf2v-14b", "Wan2.1 FLF2V-14B"),
    ("wan2.2-i2v-a14b", "Wan2.2 I2V-A14B expert"),
    ("wan2.2-ti2v-5b", "Wan2.2 TI2V-5B"),
])
def test_wan_dit_variants_in_every_layout(preset, variant):
    from videosdgx.wan.keys import to_diffusers_key
    from videosdgx.wan.transformer import WAN_PRESETS, WanModel

    official = meta_state(lambda: WanModel(WAN_PRESETS[preset]))
    layouts = {
        "official (same keys as Comfy-Org repackaged)": official,
        "ComfyUI checkpoint (model.diffusion_model. prefix)": {"model.diffusion_model." + k: v for k, v in official.items()},
        "diffusers": {to_diffusers_key(k): v for k, v in official.items()},
    }
    counts = set()
    for layout, sd in layouts.items():
        found = ident(sd)
        assert (found.family, found.component, found.variant, found.layout) == ("wan", "transformer", variant, layout)
        counts.add(found.parameters)
    assert len(counts) == 1  # `scale_shift_table` (diffusers) counts like `modulation` (official)


def test_wan_dit_size_and_fp8_scaled_reported():
    from videosdgx.wan.transformer import WAN_PRESETS, WanModel

    sd = meta_state(lambda: WanModel(WAN_PRESETS["wan2.1-t2v-1.3b"]))
    sd = {k: (v.to(torch.float8_e4m3fn) if k.endswith("q.weight") else v.to(torch.bfloat16)) for k, v in sd.items()}
    sd["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn, device="meta")
    sd["blocks.0.self_attn.q.scale_weight"] = torch.empty((), device="meta")
    found = ident(sd)
    assert found.quantization == "fp8 scaled (ComfyUI)" and found.dtype == "bfloat16"
    assert abs(found.parameters - 1.419e9) < 0.01e9


def test_audio_driven_wan_and_vace_are_named():
    from videosdgx.wan.transformer import WAN_PRESETS, WanModel

    sd = meta_state(lambda: WanModel(WAN_PRESETS["wan2.1-t2v-1.3b"]))
    audio = {"audio_proj.proj1.weight": torch.empty(512, 46080, device="meta"),
             "audio_proj.proj1_vf.weight": torch.empty(512, 73728, device="meta"),
             "blocks.0.audio_cross_attn.kv_linear.weight": torch.empty(3072, 768, device="meta")}
    a2v = dict(sd, **audio)
    assert ident(a2v).family == "skyreels_v3" and "talking avatar" in ident(a2v).variant
    other_audio = dict(sd, **{"audio_proj.audio_proj_glob_1.weight": torch.empty(4, device="meta")})
    assert ident(other_audio).family == "wan" and "not supported" in ident(other_audio).loader
    vace = dict(sd, **{"vace_patch_embedding.weight": torch.empty(4, device="meta")})
    assert ident(vace).variant == "Wan VACE" and "not supported" in ident(vace).loader


def test_wan_vaes_and_their_diffusers_layout():
    from videosdgx.wan.vae import WanVAE21
    from videosdgx.wan.vae22 import WanVAE22
    from videosdgx.wan.vae_keys import official_to_diffusers

    for factory, version in ((WanVAE21, "Wan 2.1"), (WanVAE22, "Wan 2.2")):
        sd = meta_state(factory)
        assert (ident(sd).component, ident(sd).variant, ident(sd).layout) == ("VAE", version, "official")
        diffusers = ident(official_to_diffusers(sd))
        assert (diffusers.variant, diffusers.layout) == (version, "diffusers")


def test_umt5_both_layouts_and_clip_vision_layouts():
    from videosdgx.text.t5 import T5Config, T5Encoder
    from videosdgx.text.t5_keys import hf_to_wan_key
    from videosdgx.wan.clip_vision import ClipVisionConfig, ClipVisionEncoder

    hf = meta_state(lambda: T5Encoder(T5Config.umt5_xxl()))
    assert (ident(hf).variant, ident(hf).layout) == ("UMT5 (24 layers)", "HF / ComfyUI")
    wan = ident({hf_to_wan_key(k): v for k, v in hf.items()})
    assert (wan.variant, wan.layout) == ("UMT5 (24 layers)", "Wan official (.pth)")
    clip = ident(meta_state(lambda: ClipVisionEncoder(ClipVisionConfig.vit_h_14())))
    assert (clip.component, clip.layout) == ("CLIP vision", "HF / ComfyUI")


def test_wan_loader_refuses_a_vae_with_the_right_hint(tmp_path):
    from videosdgx.runtime.model_files import LoadRequest
    from videosdgx.testing.wan import _vae_state
    from videosdgx.wan.loaders import load_dit

    path = save_safetensors(tmp_path / "wan_2.1_vae.safetensors", _vae_state("2.1", 0))
    with pytest.raises(WrongComponentError, match=r"is a Wan 2.1 VAE.*load it with the Wan VAE Loader"):
        load_dit(path, LoadRequest())
