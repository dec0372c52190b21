"""Quantised weights: fp8 / scaled fp8 round trips, NVFP4 layout, the shared QuantizedLinear and the Linear swaps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.runtime.errors import CheckpointError, ConfigurationError
from videosdgx.runtime.fp8 import FP8_DTYPES, dequantize_fp8, is_fp8, quantize_fp8
from videosdgx.runtime.nvfp4 import (
    dequantize_nvfp4,
    e2m1_table,
    nvfp4_storage_shapes,
    quantize_nvfp4,
    swizzle_block_scales,
    unswizzle_block_scales,
)
from videosdgx.runtime.quantized_linear import (
    QuantizedLinear,
    fp8_matmul_supported,
    is_large_linear,
    quantize_module_linears,
    scaled_mm_linear,
    swap_linears_for_checkpoint,
)

# Format parameters: (mantissa bits, exponent bias).
FP8_FORMATS = {torch.float8_e4m3fn: (3, 7), torch.float8_e5m2: (2, 15)}
FP32_SLACK = 2.0**-22  # one quantise division plus one dequantise multiplication in fp32


def fp8_rounding_bound(w: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Largest |dequant(quant(w)) - w| allowed by the format: half an ulp for normal numbers (2^-(m+1) relative),
    half the subnormal spacing 2^(1-bias) * 2^-m (absolute, in the scaled domain) below the normal range."""
    mantissa_bits, bias = FP8_FORMATS[dtype]
    half_ulp = 2.0 ** -(mantissa_bits + 1)
    half_subnormal_step = 2.0 ** (1 - bias - mantissa_bits) / 2
    return (half_ulp + FP32_SLACK) * w.abs() + half_subnormal_step * float(scale) * (1 + FP32_SLACK)


def wide_range_weights(*shape: int, seed: int = 0) -> torch.Tensor:
    """Gaussian values spread over four decades, so normal and subnormal fp8 codes both occur."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 10 ** (-4 * torch.rand(*shape, generator=g))


@pytest.mark.parametrize("dtype", FP8_DTYPES)
def test_fp8_format_constants_match_the_derivation(dtype):
    mantissa_bits, bias = FP8_FORMATS[dtype]
    info = torch.finfo(dtype)
    assert info.eps == 2.0**-mantissa_bits
    assert info.smallest_normal == 2.0 ** (1 - bias)
    assert is_fp8(dtype) and not is_fp8(torch.bfloat16)


@pytest.mark.parametrize("dtype", FP8_DTYPES)
def test_fp8_round_trip_within_format_bound(dtype):
    w = wide_range_weights(64, 96)
    w8, scale = quantize_fp8(w, dtype)
    assert w8.dtype == dtype and w8.shape == w.shape
    assert scale.dtype == torch.float32 and scale.shape == ()
    assert scale == w.abs().max() / torch.finfo(dtype).max
    error = (dequantize_fp8(w8, scale, torch.float32) - w).abs()
    bound = fp8_rounding_bound(w, scale, dtype)
    assert (error <= bound).all(), float((error - bound).max())
    assert (error / bound).max() > 0.5  # the bound is tight: a format one bit coarser would break it


def test_fp8_without_scale_is_a_saturating_cast():
    w = torch.tensor([0.1, -3.0, 1000.0, -1000.0])
    w8, scale = quantize_fp8(w, torch.float8_e4m3fn, per_tensor_scale=False)
    assert scale == 1.0
    assert dequantize_fp8(w8, None, torch.float32).tolist() == [0.1015625, -3.0, 448.0, -448.0]


def test_scaled_fp8_dequant_equals_comfyui_formula_bit_for_bit_in_bf16():
    g = torch.Generator().manual_seed(1)
    w8 = (torch.randn(64, 64, generator=g) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    scale = torch.tensor(0.0123456789, dtype=torch.float32)
    comfy = w8.to(torch.bfloat16) * scale.to(torch.bfloat16)
    ours = dequantize_fp8(w8, scale, torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours.view(torch.int16), comfy.view(torch.int16))
    # The order matters on this data: multiplying in fp32 first gives other bf16 values.
    assert ((w8.float() * scale).to(torch.bfloat16) != comfy).any()

    tensors = {"weight": ((64, 64), torch.float8_e4m3fn), "scale_weight": ((1,), torch.float32)}
    layer = QuantizedLinear(64, 64, tensors, bias_dtype=torch.float32)
    layer.load_state_dict({"weight": w8, "scale_weight": scale.reshape(1), "bias": torch.randn(64, generator=g)})
    x = torch.randn(3, 64, generator=g, dtype=torch.bfloat16)
    assert torch.equal(layer(x), F.linear(x, comfy, layer.bias.to(torch.bfloat16)))


@pytest.mark.parametrize("dtype", FP8_DTYPES)
def test_quantized_linear_matches_fp32_linear_within_bound(dtype):
    torch.manual_seed(2)
    linear = nn.Linear(96, 48).requires_grad_(False)
    layer = QuantizedLinear.from_linear(linear, dtype)
    x = torch.randn(5, 7, 96)
    y = layer(x)
    assert y.shape == (5, 7, 48) and y.dtype == torch.float32
    w_bound = fp8_rounding_bound(linear.weight, layer.weight_scale, dtype)
    bound = x.abs() @ w_bound.T + 1e-5 * (x.abs() @ linear.weight.abs().T) + 1e-6
    error = (y - linear(x)).abs()
    assert (error <= bound).all(), float((error - bound).max())
    assert error.max() > 0
    # Nothing upcast is kept: the layer still holds only its fp8 weight, its scale and the bias.
    assert {k: v.dtype for k, v in layer.state_dict().items()} == {
        "weight": dtype, "weight_scale": torch.float32, "bias": torch.float32,
    }
    assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_fp8_matmul_path_within_bound_and_off_on_cpu():
    torch.manual_seed(3)
    w = torch.randn(48, 64)
    bias = torch.randn(48)
    x = torch.randn(4, 5, 64)
    w8, w_scale = quantize_fp8(w)
    x_scale = x.abs().max() / 448
    y = scaled_mm_linear(x, w8, w_scale, bias, x_scale)
    x_err = fp8_rounding_bound(x, x_scale, torch.float8_e4m3fn)
    w_err = fp8_rounding_bound(w, w_scale, torch.float8_e4m3fn)
    product_bound = (x.abs() + x_err) @ (w.abs() + w_err).T - x.abs() @ w.abs().T
    bound = product_bound + 1e-5 * (x.abs() @ w.abs().T) + 1e-5
    error = (y - F.linear(x, w, bias)).abs()
    assert y.shape == (4, 5, 48)
    assert (error <= bound).all(), float((error - bound).max())

    assert not fp8_matmul_supported(torch.device("cpu"))
    layer = QuantizedLinear(64, 48, {"weight": ((48, 64), torch.float8_e4m3fn), "weight_scale": ((), torch.float32)})
    layer.load_state_dict({"weight": w8, "weight_scale": w_scale, "bias": bias.to(torch.bfloat16)})
    layer.fp8_matmul = True
    assert torch.equal(layer(x), F.linear(x, w8.float() * w_scale, bias.to(torch.bfloat16).float()))


def small_model() -> nn.Module:
    return nn.ModuleDict({
        "proj_in": nn.Linear(128, 128),
        "gate": nn.Linear(8, 8),
        "head": nn.Linear(128, 256),
    })


def test_quantize_module_linears_converts_eligible_layers_in_place():
    torch.manual_seed(4)
    model = small_model().requires_grad_(False)
    reference = {name: m.weight.clone() for name, m in model.items()}
    converted = quantize_module_linears(model, torch.float8_e4m3fn, lambda name, linear: name != "head")
    assert converted == ["proj_in", "gate"]
    assert isinstance(model["gate"], QuantizedLinear) and isinstance(model["head"], nn.Linear)
    w8, scale = quantize_fp8(reference["proj_in"])
    assert torch.equal(model["proj_in"].weight.view(torch.uint8), w8.view(torch.uint8))
    assert torch.equal(model["proj_in"].weight_scale, scale)

    default = small_model()
    assert quantize_module_linears(default, torch.float8_e5m2) == ["proj_in", "head"]  # gate is too small
    assert not is_large_linear("gate", default["gate"])
    assert default["head"].weight.dtype == torch.float8_e5m2

    with pytest.raises(ConfigurationError, match="float8_e4m3fn"):
        quantize_module_linears(small_model(), torch.bfloat16)


def test_convert_at_load_on_meta_then_fill_from_float_weights():
    torch.manual_seed(5)
    loaded = small_model()
    with torch.device("meta"):
        model = small_model()
    assert quantize_module_linears(model) == ["proj_in", "head"]
    assert model["head"].weight.is_meta and model["head"].weight.dtype == torch.float8_e4m3fn
    model.to_empty(device="cpu")
    for name in ("proj_in", "head"):
        model[name].set_float_weight(loaded[name].weight.detach())
        model[name].bias.data.copy_(loaded[name].bias)
    expected = QuantizedLinear.from_linear(loaded["head"])
    x = torch.randn(2, 128)
    assert torch.equal(model["head"](x), expected(x))
    with pytest.raises(CheckpointError, match=r"\[16, 128\]"):
        model["head"].set_float_weight(torch.zeros(16, 128))


def test_e2m1_table_and_codes():
    assert e2m1_table().tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6]
    assert torch.signbit(e2m1_table()[8])


def test_quantize_nvfp4_rounds_ties_to_even_saturates_and_swizzles():
    row0 = [6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 5.5, -0.1, 0.3, 2.9, -4, 1.0, 0.0, -6]
    row1 = [7] + [0] * 15
    global_scale = torch.tensor(2.0**-7)  # row 0: block scale 6 / 6 / 2^-7 = 128, an exact e4m3 value
    packed, scales, stored_global = quantize_nvfp4(torch.tensor([row0, row1]), "ltx2", global_scale)
    assert packed.tolist() == [
        [0x70, 0x22, 0x44, 0x66, 0x78, 0x15, 0xE2, 0x0F],
        [0x70, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    ]
    # Row 1: 7/6/2^-7 = 149.3 -> e4m3 144 (0x71); 7/144*128 = 6.2 saturates to code 7.
    flat = scales.view(torch.uint8).flatten()
    assert scales.shape == (128, 4) and scales.dtype == torch.float8_e4m3fn
    assert flat[0] == 0x70 and flat[16] == 0x71 and flat.count_nonzero() == 2  # row r sits at offset r*16
    assert stored_global.dtype == torch.float32 and stored_global == 2.0**-7


def test_swizzle_round_trip():
    g = torch.Generator().manual_seed(6)
    scales = torch.randint(0, 0x7F, (300, 10), generator=g, dtype=torch.uint8).view(torch.float8_e4m3fn)
    stored = swizzle_block_scales(scales)
    assert stored.shape == (384, 12)
    assert torch.equal(unswizzle_block_scales(stored, 300, 10).view(torch.uint8), scales.view(torch.uint8))


NVFP4_CASES = {"ltx2": (130, 96), "comfy": (20, 40)}  # comfy: rows and columns both need 16-padding


@pytest.mark.parametrize("layout", NVFP4_CASES)
def test_nvfp4_round_trip_within_bound(layout):
    out_features, in_features = NVFP4_CASES[layout]
    w = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(7))
    packed, scales, global_scale = quantize_nvfp4(w, layout)
    assert (tuple(packed.shape), tuple(scales.shape)) == nvfp4_storage_shapes(out_features, in_features, layout)
    assert global_scale == w.abs().max() / 2688
    restored = dequantize_nvfp4(packed, scales, global_scale, torch.float32, (out_features, in_features), layout)
    # Decode scale T <= block_amax / 6 * (1 + 2^-4) (e4m3 rounding of a normal block scale). The E2M1 grid step is
    # 0.5 below 2, 1 in [2, 4), 2 in [4, 6] and values up to 6.4 saturate, so the error is <= max(T / 4, |w| / 4).
    padded = F.pad(w, (0, (-in_features) % 16))
    block_amax = padded.abs().unflatten(1, (-1, 16)).amax(-1).repeat_interleave(16, 1)[:, :in_features]
    bound = torch.maximum(block_amax / 6 * (1 + 2**-4) / 4, w.abs() / 4) * (1 + 1e-6)
    error = (restored - w).abs()
    assert (error <= bound).all(), float((error - bound).max())
    assert (error / bound).max() > 0.5  # and tight


def reference_dequantize(
    packed: torch.Tensor, scales: torch.Tensor, global_scale: float, out_features: int, in_features: int
) -> torch.Tensor:
    """NVFP4 decoded one element at a time, written from the layout description with nothing shared."""
    magnitudes = {0: 0.0, 1: 0.5, 2: 1.0, 3: 1.5, 4: 2.0, 5: 3.0, 6: 4.0, 7: 6.0}

    def e4m3(byte: int) -> float:
        sign = -1.0 if byte & 0x80 else 1.0
        exponent, mantissa = (byte >> 3) & 0xF, byte & 0x7
        if exponent == 0:
            return sign * mantissa / 8 * 2.0**-6
        return sign * (1 + mantissa / 8) * 2.0 ** (exponent - 7)

    packed_rows = packed.tolist()
    scale_bytes = scales.view(torch.uint8).flatten().tolist()
    tiles_per_row = scales.shape[1] // 4
    out = np.zeros((out_features, in_features), dtype=np.float32)
    for r in range(out_features):
        for k in range(in_features):
            byte = packed_rows[r][k // 2]
            nibble = byte >> 4 if k % 2 == 0 else byte & 0xF
            value = -magnitudes[nibble & 7] if nibble & 8 else magnitudes[nibble & 7]
            block = k // 16
            tile = (r // 128) * tiles_per_row + block // 4
            offset = tile * 512 + (r % 32) * 16 + (r % 128) // 32 * 4 + block % 4
            scale = np.float32(e4m3(scale_bytes[offset])) * np.float32(global_scale)
            out[r, k] = np.float32(value) * scale
    return torch.from_numpy(out)


@pytest.mark.parametrize("layout", NVFP4_CASES)
def test_dequantize_nvfp4_matches_per_element_reference(layout):
    out_features, in_features = NVFP4_CASES[layout]
    packed_shape, scale_shape = nvfp4_storage_shapes(out_features, in_features, layout)
    g = torch.Generator().manual_seed(8)
    packed = torch.randint(0, 256, packed_shape, generator=g, dtype=torch.uint8)
    scales = torch.randint(0, 0x7F, scale_shape, generator=g, dtype=torch.uint8)  # positive, no NaN code
    global_scale = torch.tensor(0.0123)
    expected = reference_dequantize(packed, scales, 0.0123, out_features, in_features)
    shape = (out_features, in_features)
    ours = dequantize_nvfp4(packed, scales.view(torch.float8_e4m3fn), global_scale, torch.float32, shape, layout)
    assert torch.equal(ours, expected)
    ours_bf16 = dequantize_nvfp4(packed, scales, global_scale.reshape(1), torch.bfloat16, shape, layout)
    assert torch.equal(ours_bf16, expected.to(torch.bfloat16))


def test_dequantize_nvfp4_rejects_wrong_shapes():
    packed, scales, global_scale = quantize_nvfp4(torch.randn(32, 64))
    with pytest.raises(ValueError, match=r"uint8 \[32, 32\]"):
        dequantize_nvfp4(packed[:, :30], scales, global_scale, torch.float32, (32, 64))
    with pytest.raises(ValueError, match="one value"):
        dequantize_nvfp4(packed, scales, torch.ones(2), torch.float32, (32, 64))
    with pytest.raises(ValueError, match="divisible by 16"):
        dequantize_nvfp4(packed, scales, global_scale, torch.float32, (32, 60))


def checkpoint_model() -> nn.Module:
    attn = nn.ModuleDict({"q": nn.Linear(64, 32), "k": nn.Linear(64, 32), "v": nn.Linear(64, 32)})
    ff = nn.ModuleDict({"up": nn.Linear(64, 48), "down": nn.Linear(40, 20)})
    return nn.ModuleDict({"blocks": nn.ModuleList([nn.ModuleDict({"attn": attn, "ff": ff})]), "head": nn.Linear(20, 8)})


def make_checkpoint() -> dict[str, torch.Tensor]:
    """One Linear per stored flavour, with the key names of the real files."""
    g = torch.Generator().manual_seed(9)
    sd: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for name, out_features, in_features in [("attn.q", 32, 64), ("attn.k", 32, 64), ("attn.v", 32, 64),
                                            ("ff.up", 48, 64), ("ff.down", 20, 40)]:
        sd[f"blocks.0.{name}.bias"] = torch.randn(out_features, generator=g)
    w8, scale = quantize_fp8(torch.randn(32, 64, generator=g))
    sd.update({"blocks.0.attn.q.weight": w8, "blocks.0.attn.q.scale_weight": scale,  # ComfyUI scaled fp8
               "blocks.0.attn.q.scale_input": torch.tensor(1.0)})
    w8, scale = quantize_fp8(torch.randn(32, 64, generator=g))
    sd.update({"blocks.0.attn.k.weight": w8, "blocks.0.attn.k.weight_scale": scale.reshape(1),  # LTX-2 fp8
               "blocks.0.attn.k.input_scale": torch.tensor([0.5])})
    sd["blocks.0.attn.v.weight"] = torch.randn(32, 64, generator=g).to(torch.float8_e5m2)  # plain fp8
    packed, scales, global_scale = quantize_nvfp4(torch.randn(48, 64, generator=g), "ltx2")
    sd.update({"blocks.0.ff.up.weight": packed, "blocks.0.ff.up.weight_scale": scales,
               "blocks.0.ff.up.weight_scale_2": global_scale, "blocks.0.ff.up.input_scale": torch.tensor(0.02)})
    packed, scales, global_scale = quantize_nvfp4(torch.randn(20, 40, generator=g), "comfy")
    sd.update({"blocks.0.ff.down.weight": packed, "blocks.0.ff.down.weight_scale": scales.view(torch.uint8),
               "blocks.0.ff.down.weight_scale_2": global_scale,
               "blocks.0.ff.down.pre_quant_scale": torch.rand(40, generator=g) + 0.5,
               "blocks.0.ff.down.comfy_quant": torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()),
                                                            dtype=torch.uint8)})
    sd.update({"head.weight": torch.randn(8, 20, generator=g).to(torch.bfloat16), "head.bias": torch.zeros(8)})
    return sd


def dtypes_and_shapes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.dtype], dict[str, torch.Size]]:
    """What a loader reads from a file header."""
    return {k: v.dtype for k, v in sd.items()}, {k: v.shape for k, v in sd.items()}


SWAPPED = ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v", "blocks.0.ff.up", "blocks.0.ff.down"]


def test_swap_on_meta_gives_checkpoint_names_shapes_and_dtypes():
    sd = make_checkpoint()
    with torch.device("meta"):
        model = checkpoint_model()
    swapped = swap_linears_for_checkpoint(model, *dtypes_and_shapes(sd))
    assert swapped == SWAPPED
    assert isinstance(model["head"], nn.Linear)
    state = model.state_dict()
    assert set(state) == set(sd) - {"scaled_fp8"}
    assert all(t.is_meta for t in state.values())
    for key in state:
        if not key.startswith("head."):
            assert (state[key].shape, state[key].dtype) == (sd[key].shape, sd[key].dtype), key
    assert [model.get_submodule(n).format for n in SWAPPED] == ["fp8", "fp8", "fp8", "nvfp4", "nvfp4"]
    assert [model.get_submodule(n).layout for n in SWAPPED[3:]] == ["ltx2", "comfy"]


def test_swapped_model_loads_by_name_and_computes_the_stored_weights():
    sd = make_checkpoint()
    with torch.device("meta"):
        model = checkpoint_model()
    swap_linears_for_checkpoint(model, *dtypes_and_shapes(sd))
    model.to_empty(device="cpu")
    model.load_state_dict({k: v for k, v in sd.items() if k != "scaled_fp8"})
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(10))
    block = model["blocks"][0]

    def bias(name):
        return sd[f"blocks.0.{name}.bias"]

    q_weight = sd["blocks.0.attn.q.weight"].float() * sd["blocks.0.attn.q.scale_weight"]
    assert torch.equal(block["attn"]["q"](x), F.linear(x, q_weight, bias("attn.q")))
    k_weight = sd["blocks.0.attn.k.weight"].float() * sd["blocks.0.attn.k.weight_scale"]
    assert torch.equal(block["attn"]["k"](x), F.linear(x, k_weight, bias("attn.k")))
    assert torch.equal(block["attn"]["v"](x), F.linear(x, sd["blocks.0.attn.v.weight"].float(), bias("attn.v")))

    up = "blocks.0.ff.up"
    up_weight = reference_dequantize(
        sd[f"{up}.weight"], sd[f"{up}.weight_scale"], float(sd[f"{up}.weight_scale_2"]), 48, 64
    )
    assert torch.equal(block["ff"]["up"](x), F.linear(x, up_weight, bias("ff.up")))
    down = "blocks.0.ff.down"
    down_weight = reference_dequantize(
        sd[f"{down}.weight"], sd[f"{down}.weight_scale"], float(sd[f"{down}.weight_scale_2"]), 20, 40
    )
    h = x[:, :40]
    expected = F.linear(h * sd[f"{down}.pre_quant_scale"], down_weight, bias("ff.down"))
    assert torch.equal(block["ff"]["down"](h), expected)


def mutate(sd: dict[str, torch.Tensor], key: str, value: torch.Tensor | None) -> dict[str, torch.Tensor]:
    out = dict(sd)
    if value is None:
        del out[key]
    else:
        out[key] = value
    return out


BAD_CHECKPOINTS = {
    "two-element scale": ("blocks.0.attn.q.scale_weight", torch.ones(2), "blocks.0.attn.q.scale_weight"),
    "two-element input scale": ("blocks.0.attn.k.input_scale", torch.ones(1, 2), "blocks.0.attn.k.input_scale"),
    "two-element global scale": ("blocks.0.ff.up.weight_scale_2", torch.ones(2), "blocks.0.ff.up.weight_scale_2"),
    "wrong packed shape": ("blocks.0.ff.up.weight", torch.zeros(48, 30, dtype=torch.uint8), "blocks.0.ff.up.weight"),
    "wrong block-scale shape": ("blocks.0.ff.up.weight_scale", torch.zeros(48, 4, dtype=torch.float8_e4m3fn),
                                "blocks.0.ff.up.weight_scale"),
    "missing global scale": ("blocks.0.ff.up.weight_scale_2", None, "blocks.0.ff.up.weight_scale_2"),
    "wrong fp8 shape": ("blocks.0.attn.v.weight", torch.zeros(64, 32, dtype=torch.float8_e5m2),
                        "blocks.0.attn.v.weight"),
    "both fp8 scale names": ("blocks.0.attn.q.weight_scale", torch.tensor(1.0), "blocks.0.attn.q"),
    "int8 weight without scale": ("blocks.0.attn.v.weight", torch.zeros(32, 64, dtype=torch.int8),
                                  "blocks.0.attn.v.weight"),
    "int16 weight": ("blocks.0.attn.v.weight", torch.zeros(32, 64, dtype=torch.int16), "blocks.0.attn.v.weight"),
}


@pytest.mark.parametrize("scale_shape", [(), (1,), (32,), (32, 1)])
def test_int8_tensorwise_layers_compute_int8_times_scale(scale_shape):
    g = torch.Generator().manual_seed(3)
    weight = torch.randint(-128, 128, (32, 64), generator=g, dtype=torch.int8)
    scale = torch.rand(scale_shape, generator=g) + 0.01
    sd = {"weight": weight, "weight_scale": scale, "bias": torch.randn(32, generator=g)}
    with torch.device("meta"):
        model = nn.ModuleDict({"proj": nn.Linear(64, 32)})
    assert swap_linears_for_checkpoint(model, *dtypes_and_shapes({f"proj.{k}": v for k, v in sd.items()})) == ["proj"]
    model.to_empty(device="cpu")
    model.load_state_dict({f"proj.{k}": v for k, v in sd.items()})
    x = torch.randn(3, 64, generator=g)
    per_row = scale.reshape(-1, 1) if scale.numel() > 1 else scale
    assert model["proj"].format == "int8"
    assert torch.equal(model["proj"](x), F.linear(x, weight.float() * per_row, sd["bias"]))


def test_int8_scale_of_another_length_is_refused():
    sd = {"proj.weight": torch.zeros(32, 64, dtype=torch.int8), "proj.weight_scale": torch.ones(64)}
    with torch.device("meta"):
        model = nn.ModuleDict({"proj": nn.Linear(64, 32)})
    with pytest.raises(CheckpointError, match=r"proj\.weight_scale .*one per output row \(32\)"):
        swap_linears_for_checkpoint(model, *dtypes_and_shapes(sd))


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_swap_rejects_bad_checkpoints_naming_the_layer(case):
    key, value, named = BAD_CHECKPOINTS[case]
    sd = mutate(make_checkpoint(), key, value)
    with torch.device("meta"):
        model = checkpoint_model()
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        swap_linears_for_checkpoint(model, *dtypes_and_shapes(sd))


def test_meta_construction_of_both_formats():
    with torch.device("meta"):
        fp8 = QuantizedLinear(64, 32, {"weight": ((32, 64), torch.float8_e5m2)}, bias=False)
        nvfp4 = QuantizedLinear(40, 20, {
            "weight": ((32, 24), torch.uint8),
            "weight_scale": ((128, 4), torch.float8_e4m3fn),
            "weight_scale_2": ((), torch.float32),
        })
    assert fp8.weight.is_meta and fp8.bias is None and fp8.scale_name is None
    assert nvfp4.layout == "comfy" and nvfp4.bias.dtype == torch.bfloat16 and nvfp4.weight_scale.is_meta
    assert not nvfp4.weight.requires_grad
