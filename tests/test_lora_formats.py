"""LoRA files: identification (`videosdgx inspect`), fp8 / bf16 weights, and every bad input with its message."""

import copy

import pytest
import torch
from test_lora_parity import assert_relative, inputs, ours_forward
from test_wan_transformer import diffusers_twin, ours_from, tiny_config

from videosdgx.cli import main
from videosdgx.runtime.errors import CheckpointError, WrongComponentError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.runtime.quantized_linear import QuantizedLinear, quantize_module_linears
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.lora import FORMATS, ltx2_lora_state, wan_lora_state, write_wan_lora
from videosdgx.wan.loaders import load_dit
from videosdgx.wan.lora import apply_wan_lora

CFG = tiny_config("t2v", num_heads=2, head_dim=32)


@pytest.fixture(scope="module")
def model():
    return ours_from(diffusers_twin(CFG), CFG)


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_names_model_rank_and_layers(tmp_path, capsys, model, fmt):
    path = write_wan_lora(tmp_path / f"{fmt}.safetensors", model, fmt, rank=6, dtype=torch.bfloat16)
    assert main(["inspect", str(path)]) == 0
    report = capsys.readouterr().out
    layout = {"kohya": "kohya", "official": "diffusion_model.", "lightx2v": "lightx2v",
              "diffusers": "diffusers / PEFT"}[fmt]
    assert "Wan (width 64) LoRA (rank 6) LoRA (wan)" in report and layout in report
    assert f"touches 3 blocks (0-2), {16 if fmt == 'lightx2v' else 10} layers in each" in report
    assert "self_attn.q" in report and "ffn.2" in report and "Wan LoRA Loader" in report
    if fmt == "lightx2v":
        assert "full differences: cross_attn.k.bias" in report and "outside the blocks: head.head" in report
        assert ", modulation, norm3.bias, norm3.weight, " in report


def test_real_widths_are_named():
    shapes = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(64, 5120),
              "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(5120, 64)}
    from videosdgx.runtime.identify import identify_keys

    found = identify_keys({k: tuple(v.shape) for k, v in shapes.items()}, {k: v.dtype for k, v in shapes.items()})
    assert found.variant == "Wan 14B (Wan2.1 T2V / I2V-14B or a Wan2.2 A14B expert) LoRA (rank 64)"


@pytest.mark.parametrize("weight_format", ["fp8", "bf16"])
def test_lowp_weights_follow_the_merged_fp32_reference(tmp_path, model, weight_format):
    """fp8 (runtime low-rank add, the fp8 weights untouched) and bf16 weights with a LoRA stay within the error the
    storage format has without the LoRA, measured against our fp32 model with the LoRA (itself equal to diffusers'
    within 1e-5, test_lora_parity). Measured: fp8 2.59 % without, 2.32 % with; bf16 0.57 % without, 0.75 % with."""
    data = inputs(CFG)
    path = write_wan_lora(tmp_path / "l.safetensors", model, "lightx2v", seed=4, std=0.05, norm_diffs="random")
    low = copy.deepcopy(model)
    if weight_format == "fp8":
        quantize_module_linears(low, predicate=lambda name, linear: name.startswith("blocks."))
        assert isinstance(low.blocks[0].self_attn.q, QuantizedLinear)
    else:
        low = low.to(torch.bfloat16)
    error_without = assert_relative(ours_forward(model, data), ours_forward(low, data), 0.2)
    stored = {n: p.clone() for n, p in low.named_parameters() if p.dtype.itemsize == 1}
    reference = copy.deepcopy(model)
    apply_wan_lora(reference, path)
    apply_wan_lora(low, path)
    error_with = assert_relative(ours_forward(reference, data), ours_forward(low, data), 0.2)
    # fp8: the LoRA runs in the compute dtype beside the untouched fp8 weights; bf16: its terms round in bf16 too.
    assert error_with <= (1.25 if weight_format == "fp8" else 1.5) * error_without, (error_with, error_without)
    assert all(torch.equal(p, stored[n]) for n, p in low.named_parameters() if n in stored)


def test_lora_for_ltx2_is_refused_naming_both(tmp_path, model):
    path = save_safetensors(tmp_path / "ltx2_lora.safetensors", ltx2_lora_state())
    with pytest.raises(WrongComponentError, match=r"ltx2_lora.safetensors is a LTX-2 \(2 blocks\) LoRA \(rank 4\), "
                                                  r"not a Wan LoRA.*LTX-2 Loader.s distilled_lora input.*choose a Wan LoRA"):
        apply_wan_lora(model, path)


def test_rank_mismatch(tmp_path, model):
    tensors, _ = wan_lora_state(model, "official")
    tensors["diffusion_model.blocks.1.ffn.0.lora_B.weight"] = torch.zeros(128, 3)
    path = save_safetensors(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(CheckpointError, match=r"blocks.1.ffn.0 has lora_down \[4, 64\] and lora_up \[128, 3\], "
                                              r"whose ranks differ \(4 vs 3\)"):
        apply_wan_lora(model, path)


def test_truncated_lora(tmp_path, model):
    path = write_wan_lora(tmp_path / "cut.safetensors", model, "kohya")
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="cut.safetensors is truncated"):
        apply_wan_lora(model, path)


def test_lora_with_no_layer_of_this_model(tmp_path, model):
    tensors, _ = wan_lora_state(model, "official", top_level=False)
    moved = {k.replace("blocks.", "blocks.1"): v for k, v in tensors.items()}  # blocks 10, 11, 12
    path = save_safetensors(tmp_path / "deeper.safetensors", moved)
    with pytest.raises(CheckpointError, match="changes no layer of this model.*blocks.10"):
        apply_wan_lora(model, path)


def test_lora_for_another_width(tmp_path, model):
    other = ours_from(diffusers_twin(tiny_config("t2v", 2, 16)), tiny_config("t2v", 2, 16))
    path = write_wan_lora(tmp_path / "narrow.safetensors", other, "official")
    with pytest.raises(WrongComponentError, match=r"narrow.safetensors is a Wan \(width 32\) LoRA \(rank 4\) and "
                                                  r"does not fit this model at blocks.0.*: low-rank pair "
                                                  r"of shape \[32, 32\] for a layer of shape \[64, 64\]"):
        apply_wan_lora(model, path)


def test_model_file_given_as_lora_and_lora_given_as_model(tmp_path, model):
    dit = save_safetensors(tmp_path / "dit.safetensors", model.state_dict())
    with pytest.raises(WrongComponentError, match="dit.safetensors is a .* transformer \\(Wan\\), not a LoRA; load it "
                                                  "with the Wan Model Loader"):
        apply_wan_lora(model, dit)
    lora = write_wan_lora(tmp_path / "style.safetensors", model, "official")
    with pytest.raises(WrongComponentError, match="style.safetensors is a .*LoRA.*load it with the Wan LoRA Loader"):
        load_dit(lora, LoadRequest())


def test_unsupported_and_unknown_files(tmp_path, model):
    tensors, _ = wan_lora_state(model, "official")
    dora = save_safetensors(tmp_path / "dora.safetensors",
                            {**tensors, "diffusion_model.blocks.0.self_attn.q.dora_scale": torch.ones(1, 64)})
    with pytest.raises(CheckpointError, match="dora.safetensors is a DoRA file"):
        apply_wan_lora(model, dora)
    unknown = save_safetensors(tmp_path / "other.safetensors",
                               {"diffusion_model.down_blocks.0.conv.lora_A.weight": torch.zeros(2, 8),
                                "diffusion_model.down_blocks.0.conv.lora_B.weight": torch.zeros(8, 2)})
    with pytest.raises(WrongComponentError, match=r"other.safetensors is a LoRA for an unknown model \(rank 2\), "
                                                  r"not a Wan LoRA: it cannot be applied to a Wan model. Choose a "
                                                  r"Wan LoRA."):
        apply_wan_lora(model, unknown)
