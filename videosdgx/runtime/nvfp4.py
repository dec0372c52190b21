"""NVFP4 weights: E2M1 values packed two per byte, one e4m3 scale per 16 values, one fp32 scale per tensor.

value = e2m1(code) * e4m3(block scale) * global scale

Layout verified in the reference code (read, not copied):
  * Lightricks/LTX-2 @ 400fd31054597515f47125691032c04b1c3ee24e: packages/ltx-kernels/docs/NVFP4.md,
    packages/ltx-kernels/csrc/nvfp4/quantize.cu (`swizzled_offset`, `block_scale_e4m3`, quantize/dequantize kernels),
    packages/ltx-core/src/ltx_core/quantization/nvfp4/linear.py and prequant.py (parameter names and shapes).
  * Comfy-Org/comfy-kitchen @ 7d86acf60c88fd6c3c733c0e54db22ef74b8d77f: comfy_kitchen/tensor/nvfp4.py
    (`TensorCoreNVFP4Layout`, 16-padding, `state_dict_tensors`), comfy_kitchen/float_utils.py (`to_blocked`,
    `from_blocked`, `pack_uint4`), comfy_kitchen/backends/eager/quantization.py (`quantize_nvfp4`, `dequantize_nvfp4`).
  * Comfy-Org/ComfyUI comfy/ops.py @ 0271a469fe29524fafe5872b737123d65a63e5fc (`_load_quantized_module`: nvfp4 keys).

Common to both producers:
  * Keys: `X.weight` uint8 [rows, cols/2]; `X.weight_scale` block scales, float8_e4m3fn (ComfyUI also accepts the same
    bytes stored as uint8); `X.weight_scale_2` fp32 scalar = global decode scale amax / (448 * 6); optional fp32 scalar
    `X.input_scale` (activation scale, unused when dequantising); ComfyUI files may add `X.pre_quant_scale` [in]
    (multiplies the input) and `X.comfy_quant` (uint8 JSON bytes, {"format": "nvfp4"}).
  * Nibble order: element 2j sits in the HIGH nibble of byte j (LTX `hi_first=True`, the order its prequant
    checkpoints use; comfy-kitchen packs the same way since its first commit and made it the default flag later).
  * E2M1 code: bit 3 is the sign, bits 0-2 index (0, 0.5, 1, 1.5, 2, 3, 4, 6).
  * Block scales: the [rows, cols/16] matrix zero-padded to [roundup(rows, 128), roundup(cols/16, 4)] and stored in
    cuBLAS 128x4 tiles: entry (r, c) lives at flat offset tile*512 + (r%32)*16 + ((r%128)//32)*4 + c%4 with
    tile = (r//128) * (padded_cols/4) + c//4.
  * Quantisation: block scale = e4m3(min(block_amax / 6 / global, 448)); code = e2m1 round-to-nearest-even of
    x / (global * block scale), saturating at +-6. Dequantisation multiplies in fp32 (global * block, then value).
The two producers differ only in padding of the packed data (the `layout` argument):
  * "ltx2": weight [N, K/2] exactly; K must be a multiple of 16 (N is never padded; only the scales are).
  * "comfy": weight zero-padded to [roundup(N, 16), roundup(K, 16) / 2]; the dequantised matrix is cut back to [N, K].
When N and K are multiples of 16 the two layouts are byte-identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

E2M1_MAX = 6.0
E4M3_MAX = 448.0
BLOCK_SIZE = 16
NVFP4_LAYOUTS = ("ltx2", "comfy")
E2M1_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)

# Magnitudes halfway between neighbouring codes. A tie rounds to the even code: down at these ...
_TIES_DOWN = (0.25, 1.25, 2.5, 5.0)
# ... and up at these.
_TIES_UP = (0.75, 1.75, 3.5)

_byte_tables: dict[torch.device, torch.Tensor] = {}


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def e2m1_table(device: torch.device | str | None = None) -> torch.Tensor:
    """The 16 E2M1 values in code order (codes 8-15 are the negatives of 0-7), fp32."""
    magnitudes = torch.tensor(E2M1_MAGNITUDES, dtype=torch.float32, device=device)
    return torch.cat([magnitudes, -magnitudes])


def _byte_table(device: torch.device) -> torch.Tensor:
    """[256, 2] fp32: the two values held by each byte, high nibble (the even element) first."""
    if device not in _byte_tables:
        values = e2m1_table(device)
        codes = torch.arange(256, device=device)
        _byte_tables[device] = torch.stack([values[codes >> 4], values[codes & 0xF]], dim=-1)
    return _byte_tables[device]


def nvfp4_storage_shapes(
    out_features: int, in_features: int, layout: str = "ltx2"
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(packed weight shape, block-scale shape) as stored for an [out_features, in_features] weight."""
    if layout == "ltx2":
        if in_features % BLOCK_SIZE:
            raise ValueError(f"LTX-2 NVFP4 needs in_features divisible by {BLOCK_SIZE}, got {in_features}")
        rows, cols = out_features, in_features
    elif layout == "comfy":
        rows, cols = _round_up(out_features, BLOCK_SIZE), _round_up(in_features, BLOCK_SIZE)
    else:
        raise ValueError(f"Unknown NVFP4 layout {layout!r}; expected one of {NVFP4_LAYOUTS}")
    return (rows, cols // 2), (_round_up(rows, 128), _round_up(cols // BLOCK_SIZE, 4))


def nvfp4_layout_of(packed_shape: tuple[int, ...], out_features: int, in_features: int) -> str:
    """Which layout a stored packed weight of `packed_shape` follows ("ltx2" when both fit)."""
    for layout in NVFP4_LAYOUTS:
        try:
            expected, _ = nvfp4_storage_shapes(out_features, in_features, layout)
        except ValueError:
            continue
        if tuple(packed_shape) == expected:
            return layout
    raise ValueError(
        f"packed NVFP4 weight of shape {list(packed_shape)} fits no known layout for a "
        f"[{out_features}, {in_features}] Linear"
    )


def swizzle_block_scales(scales: torch.Tensor) -> torch.Tensor:
    """[rows, blocks] scales -> the stored [roundup(rows, 128), roundup(blocks, 4)] tensor in 128x4 tiles."""
    rows, cols = scales.shape
    padded = F.pad(scales.view(torch.uint8), (0, _round_up(cols, 4) - cols, 0, _round_up(rows, 128) - rows))
    tiled = rearrange(padded, "(rb i j) (cb c) -> (rb cb j i c)", i=4, j=32, c=4)
    return tiled.reshape(padded.shape).view(scales.dtype)


def unswizzle_block_scales(stored: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of `swizzle_block_scales`: the first [rows, cols] entries in plain row-major order."""
    padded_rows, padded_cols = stored.shape
    flat = stored.view(torch.uint8).reshape(-1)
    plain = rearrange(flat, "(rb cb j i c) -> (rb i j) (cb c)", cb=padded_cols // 4, j=32, i=4, c=4)
    return plain[:rows, :cols].view(stored.dtype)


def _encode_e2m1(x: torch.Tensor) -> torch.Tensor:
    """fp32 -> 4-bit E2M1 codes (uint8), round to nearest even, saturating at +-6, sign kept for zero."""
    magnitude = x.abs()
    down = torch.tensor(_TIES_DOWN, dtype=x.dtype, device=x.device)
    up = torch.tensor(_TIES_UP, dtype=x.dtype, device=x.device)
    index = torch.bucketize(magnitude, down, right=False) + torch.bucketize(magnitude, up, right=True)
    return (index | (torch.signbit(x).to(index.dtype) << 3)).to(torch.uint8)


def quantize_nvfp4(
    w: torch.Tensor, layout: str = "ltx2", global_scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantise a 2-D weight to NVFP4 exactly as stored: (packed uint8, swizzled e4m3 block scales, fp32 scalar).

    `global_scale` defaults to amax / (448 * 6), the decode scale both reference producers write.
    """
    if w.dim() != 2:
        raise ValueError(f"NVFP4 quantises 2-D weights, got shape {list(w.shape)}")
    (rows, half_cols), _ = nvfp4_storage_shapes(w.shape[0], w.shape[1], layout)
    x = F.pad(w.float(), (0, 2 * half_cols - w.shape[1], 0, rows - w.shape[0]))
    if global_scale is None:
        global_scale = x.abs().amax() / (E4M3_MAX * E2M1_MAX)
    global_scale = global_scale.to(device=x.device, dtype=torch.float32).reshape(())

    blocks = x.unflatten(1, (-1, BLOCK_SIZE))
    wanted = blocks.abs().amax(dim=-1) / E2M1_MAX
    wanted = torch.where(global_scale > 0, wanted / global_scale, torch.zeros_like(wanted))
    block_scales = wanted.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn)
    decode = global_scale * block_scales.float()
    data = torch.where(decode.unsqueeze(-1) > 0, blocks / decode.unsqueeze(-1), torch.zeros_like(blocks))

    codes = _encode_e2m1(data.flatten(1))
    packed = (codes[:, 0::2] << 4) | codes[:, 1::2]
    return packed, swizzle_block_scales(block_scales), global_scale


def dequantize_nvfp4(
    packed: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor,
    out_dtype: torch.dtype,
    shape: tuple[int, int],
    layout: str = "ltx2",
) -> torch.Tensor:
    """Stored NVFP4 tensors -> the [out_features, in_features] weight in `out_dtype` (computed in fp32).

    `block_scales` may be float8_e4m3fn or the same bytes as uint8; `layout` is "ltx2" or "comfy" (module docstring).
    """
    out_features, in_features = shape
    packed_shape, scale_shape = nvfp4_storage_shapes(out_features, in_features, layout)
    if packed.dtype != torch.uint8 or tuple(packed.shape) != packed_shape:
        raise ValueError(
            f"packed NVFP4 weight must be uint8 {list(packed_shape)} for a {list(shape)} {layout} weight, "
            f"got {packed.dtype} {list(packed.shape)}"
        )
    if tuple(block_scales.shape) != scale_shape or block_scales.dtype not in (torch.float8_e4m3fn, torch.uint8):
        raise ValueError(
            f"NVFP4 block scales must be float8_e4m3fn {list(scale_shape)}, "
            f"got {block_scales.dtype} {list(block_scales.shape)}"
        )
    if global_scale.numel() != 1:
        raise ValueError(f"NVFP4 global scale must hold one value, got shape {list(global_scale.shape)}")

    rows, half_cols = packed_shape
    values = _byte_table(packed.device)[packed.int()].reshape(rows, 2 * half_cols)
    scales = unswizzle_block_scales(block_scales, rows, 2 * half_cols // BLOCK_SIZE)
    scales = global_scale.float().reshape(()) * scales.view(torch.float8_e4m3fn).float()
    weight = (values.unflatten(1, (-1, BLOCK_SIZE)) * scales.unsqueeze(-1)).flatten(1)
    return weight[:out_features, :in_features].to(out_dtype)
