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
    with pytest.raises(WrongComponentError, match="is a MAGI-1 4.5B transformer.*load it with the MAGI-1 nodes"):
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
