"""fp8 weight storage (float8_e4m3fn, float8_e5m2) with one fp32 scale per tensor.

Dequantisation follows ComfyUI exactly: cast the fp8 weight to the compute dtype first, then multiply by the scale
cast to that same dtype (comfy-kitchen `dequantize_per_tensor_fp8`, Comfy-Org/comfy-kitchen @ 7d86acf6; ComfyUI's
legacy `scaled_fp8_ops` Linear does the same, comfy/ops.py @ a125cd84). Multiplying in fp32 and casting afterwards
can differ in bf16. The scale convention (scale = amax / fp8_max, weight = fp8 * scale) is that of ComfyUI's
`scale_weight` / `weight_scale` and LTX-2's `weight_scale` (ltx-core `quantize_weight_to_fp8_per_tensor`,
Lightricks/LTX-2 @ 400fd310).
"""

from __future__ import annotations

import torch

FP8_DTYPES: tuple[torch.dtype, ...] = (torch.float8_e4m3fn, torch.float8_e5m2)


def is_fp8(dtype: torch.dtype) -> bool:
    """True for the fp8 storage dtypes VideosDGX reads."""
    return dtype in FP8_DTYPES


QUANTIZE_CHUNK = 1 << 22  # elements converted at a time: bounds the float32 temporaries to 16 MB


def quantize_fp8(
    w: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn, per_tensor_scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise `w` to fp8. Returns (w8, scale) with w ~= w8 * scale and scale a rank-0 fp32 tensor.

    With `per_tensor_scale` the scale is amax / fp8_max, so the largest magnitude lands on the format's maximum;
    without it the scale is 1 (a plain saturating cast, as in `_fp8_e4m3fn` files). Works in chunks, so the only
    full-size allocation is the fp8 result (`w` may be a memory-mapped file tensor); each element is computed as
    `clamp(float(w) / scale)` cast to fp8, whatever the chunking.
    """
    if not is_fp8(dtype):
        raise ValueError(f"{dtype} is not an fp8 storage dtype; use one of {FP8_DTYPES}")
    fp8_max = torch.finfo(dtype).max
    flat = w.reshape(-1)
    chunks = flat.split(QUANTIZE_CHUNK)
    scale = torch.ones((), dtype=torch.float32, device=w.device)
    if per_tensor_scale and flat.numel():
        amax = torch.stack([chunk.abs().amax().float() for chunk in chunks]).amax()
        scale = torch.where(amax > 0, amax / fp8_max, scale)
    w8 = torch.empty(w.shape, dtype=dtype, device=w.device)
    for chunk, out in zip(chunks, w8.view(-1).split(QUANTIZE_CHUNK)):
        out.copy_((chunk.float() / scale).clamp_(-fp8_max, fp8_max))
    return w8, scale


def dequantize_fp8(w8: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """ComfyUI order: `w8.to(dtype) * scale.to(dtype)`; a missing scale means a plain cast."""
    w = w8.to(dtype)
    return w if scale is None else w * scale.to(dtype)
