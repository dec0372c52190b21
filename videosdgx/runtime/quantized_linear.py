"""`QuantizedLinear`: the one Linear replacement for weights stored as fp8, scaled fp8, int8 or NVFP4.

The layer keeps its tensors in their storage dtypes under the checkpoint's own key names and dequantises the weight
to the input's dtype for each matmul only. Supported checkpoint flavours (per Linear `X`, decided by stored dtype):

  * plain fp8 (`_fp8_e4m3fn` files): `X.weight` fp8.
  * ComfyUI scaled fp8 (`scaled_fp8` marker): `X.weight` fp8, `X.scale_weight` fp32 [] or [1], optional
    `X.scale_input`.
  * LTX-2 fp8 and ComfyUI mixed-precision fp8: `X.weight` fp8, `X.weight_scale` fp32 [] or [1], optional
    `X.input_scale`.
  * ComfyUI int8 (`int8_tensorwise`): `X.weight` int8, `X.weight_scale` fp32, one per tensor ([] or [1]) or one
    per output row ([out] or [out, 1]); weight = int8 * scale.
  * NVFP4, LTX-2 or ComfyUI layout (nvfp4.py): `X.weight` uint8, `X.weight_scale` e4m3 block scales,
    `X.weight_scale_2` fp32 scalar, optional `X.input_scale`, and `X.pre_quant_scale` [in] (multiplies the input).

ComfyUI mixed-precision files may also carry `X.comfy_quant` (JSON bytes naming the format); it is kept as a buffer
so names match, and the format is read from the stored dtypes, as the loader rule says. Key names were checked in
Comfy-Org/ComfyUI comfy/ops.py `_load_quantized_module` and comfy/quant_ops.py `QUANT_ALGOS` @ 0271a469 (int8:
comfy-kitchen's `TensorWiseINT8Layout`, scalar or per-row scale), comfy/utils.py
`convert_old_quants` @ 09708eae (renames `scale_weight` -> `weight_scale`, `scale_input` -> `input_scale`), and
Lightricks/LTX-2 @ 400fd310 ltx-core quantization/fp8_scaled_mm.py (`weight_scale`, `input_scale`) and nvfp4/.

Move a model holding these layers with `.to(device)` only: `.to(dtype)` would upcast the fp8 storage.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from videosdgx.runtime.errors import CheckpointError, ConfigurationError
from videosdgx.runtime.fp8 import dequantize_fp8, is_fp8, quantize_fp8
from videosdgx.runtime.nvfp4 import dequantize_nvfp4, nvfp4_layout_of, nvfp4_storage_shapes

log = logging.getLogger(__name__)

TensorSpec = tuple[tuple[int, ...], torch.dtype]

FP8_SCALE_NAMES = ("scale_weight", "weight_scale")  # ComfyUI scaled fp8 / LTX-2 and ComfyUI mixed precision
FP8_INPUT_SCALE_NAMES = ("scale_input", "input_scale")
NVFP4_REQUIRED = ("weight_scale", "weight_scale_2")
NVFP4_OPTIONAL = ("input_scale", "pre_quant_scale")
COMFY_QUANT = "comfy_quant"
MIN_QUANTIZED_NUMEL = 128 * 128  # below this, fp8 saves too little to be worth its rounding
FIX_HINT = "The file is corrupt or in a quantised format VideosDGX does not read; use the bf16 or fp8 release."


def fp8_matmul_supported(device: torch.device) -> bool:
    """True where `torch._scaled_mm` runs e4m3 matmuls natively (CUDA, compute capability >= 8.9)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def scaled_mm_linear(
    x: torch.Tensor,
    w8: torch.Tensor,
    weight_scale: torch.Tensor | None,
    bias: torch.Tensor | None = None,
    input_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """`x @ (w8 * weight_scale).T + bias` as one fp8 matmul: x is quantised to e4m3 with `input_scale`
    (default amax(x) / 448), saturating like ComfyUI's and LTX-2's fp8 Linears."""
    fp8_max = torch.finfo(torch.float8_e4m3fn).max
    x2 = x.reshape(-1, x.shape[-1])
    if input_scale is None:
        input_scale = (x2.abs().amax().float() / fp8_max).clamp(min=torch.finfo(torch.float32).tiny)
    input_scale = input_scale.to(x.device, torch.float32).reshape(())
    qx = (x2 / input_scale.to(x2.dtype)).clamp(-fp8_max, fp8_max).to(torch.float8_e4m3fn)
    one = torch.ones((), dtype=torch.float32, device=x.device)
    scale_b = one if weight_scale is None else weight_scale.to(x.device, torch.float32).reshape(())
    y = torch._scaled_mm(qx, w8.t(), scale_a=input_scale, scale_b=scale_b, out_dtype=x.dtype)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], w8.shape[0])


class QuantizedLinear(nn.Module):
    """Linear layer whose weight stays quantised; dequantised per forward, just for the matmul.

    `tensors` maps the checkpoint names of this layer (without the `X.` prefix) to (shape, dtype); it must hold
    `weight`. The format follows from the weight dtype: fp8 -> scaled fp8 (scale `scale_weight` or `weight_scale`,
    or none), int8 -> int8 with `weight_scale`, uint8 -> NVFP4. Set `fp8_matmul = True` to use `torch._scaled_mm` for e4m3 weights where the device
    supports it; the default dequantise-then-matmul path is exact to ComfyUI's.
    """

    fp8_matmul = False
    converts_on_load: tuple[str, ...] = ()  # tensors `set_float_weight` derives while loading (not in the file)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        tensors: Mapping[str, TensorSpec],
        bias: bool = True,
        bias_dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        weight_shape, weight_dtype = tensors["weight"]
        if is_fp8(weight_dtype):
            if tuple(weight_shape) != (out_features, in_features):
                raise ValueError(f"fp8 weight shape {list(weight_shape)} != [{out_features}, {in_features}]")
            self.format = "fp8"
            self.scale_name = next((n for n in FP8_SCALE_NAMES if n in tensors), None)
            self.input_scale_name = next((n for n in FP8_INPUT_SCALE_NAMES if n in tensors), None)
        elif weight_dtype == torch.int8:
            if tuple(weight_shape) != (out_features, in_features):
                raise ValueError(f"int8 weight shape {list(weight_shape)} != [{out_features}, {in_features}]")
            self.format = "int8"
        elif weight_dtype == torch.uint8:
            self.format = "nvfp4"
            self.layout = nvfp4_layout_of(weight_shape, out_features, in_features)
        else:
            raise ValueError(f"{weight_dtype} is not a quantised weight dtype")

        self.declared_dtype_tensors = tuple(tensors)  # the loader keeps these dtypes (fp8 data, fp32 scales)
        for name, (shape, dtype) in tensors.items():
            tensor = torch.empty(shape, dtype=dtype, device=device)
            if name == COMFY_QUANT:
                self.register_buffer(name, tensor)
            else:
                self.register_parameter(name, nn.Parameter(tensor, requires_grad=False))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, dtype=bias_dtype, device=device))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype = torch.float8_e4m3fn) -> "QuantizedLinear":
        """fp8 copy of `linear` with a per-tensor `weight_scale`, sharing its bias; an empty shell if on meta."""
        shape = (linear.out_features, linear.in_features)
        tensors = {"weight": (shape, dtype), "weight_scale": ((), torch.float32)}
        layer = cls(linear.in_features, linear.out_features, tensors, bias=False, device=linear.weight.device)
        layer.bias = linear.bias
        if linear.weight.is_meta:
            layer.converts_on_load = ("weight_scale",)
        else:
            layer.set_float_weight(linear.weight.detach())
        return layer

    def set_float_weight(self, w: torch.Tensor) -> None:
        """Quantise a float [out, in] weight into this fp8 layer (the "convert to fp8 at load" path)."""
        if self.format != "fp8" or self.scale_name is None:
            raise ValueError("set_float_weight needs an fp8 layer with a weight scale")
        if tuple(w.shape) != (self.out_features, self.in_features):
            raise CheckpointError(
                f"Weight of shape {list(w.shape)} does not fit a [{self.out_features}, {self.in_features}] Linear. "
                f"{FIX_HINT}"
            )
        w8, scale = quantize_fp8(w, self.weight.dtype)
        old_scale = getattr(self, self.scale_name)
        self.weight = nn.Parameter(w8, requires_grad=False)
        setattr(self, self.scale_name, nn.Parameter(scale.reshape(old_scale.shape), requires_grad=False))

    def dequantized_weight(self, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
        """The [out, in] weight in `dtype` on `device`: a temporary for one matmul, never stored."""
        if self.format == "fp8":
            scale = getattr(self, self.scale_name).to(device) if self.scale_name else None
            return dequantize_fp8(self.weight.to(device), scale, dtype)
        if self.format == "int8":
            scale = self.weight_scale.to(device, dtype)
            return self.weight.to(device, dtype) * (scale.reshape(-1, 1) if scale.numel() > 1 else scale.reshape(()))
        return dequantize_nvfp4(
            self.weight.to(device),
            self.weight_scale.to(device),
            self.weight_scale_2.to(device),
            dtype,
            (self.out_features, self.in_features),
            self.layout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre_quant_scale = getattr(self, "pre_quant_scale", None)
        if pre_quant_scale is not None:
            x = x * pre_quant_scale.to(x.device, x.dtype)
        bias = None if self.bias is None else self.bias.to(x.device, x.dtype)
        if self._use_fp8_matmul(x):
            input_scale = getattr(self, self.input_scale_name) if self.input_scale_name else None
            scale = getattr(self, self.scale_name) if self.scale_name else None
            return scaled_mm_linear(x, self.weight.to(x.device), scale, bias, input_scale)
        return F.linear(x, self.dequantized_weight(x.dtype, x.device), bias)

    def _use_fp8_matmul(self, x: torch.Tensor) -> bool:
        return (
            self.fp8_matmul
            and self.format == "fp8"
            and self.weight.dtype == torch.float8_e4m3fn
            and x.dtype in (torch.bfloat16, torch.float16, torch.float32)
            and self.in_features % 16 == 0
            and self.out_features % 16 == 0
            and fp8_matmul_supported(x.device)
        )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, format={self.format}"


def _child_linears(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in module.named_modules() if name and isinstance(m, nn.Linear)]


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(module.get_submodule(parent_name), attr, new)


def is_large_linear(name: str, linear: nn.Linear) -> bool:
    """Default `quantize_module_linears` predicate: Linears with at least `MIN_QUANTIZED_NUMEL` weights."""
    return linear.in_features * linear.out_features >= MIN_QUANTIZED_NUMEL


def quantize_module_linears(
    module: nn.Module,
    dtype: torch.dtype = torch.float8_e4m3fn,
    predicate: Callable[[str, nn.Linear], bool] | None = None,
) -> list[str]:
    """Convert the `nn.Linear`s of `module` that pass `predicate(name, linear)` to fp8 `QuantizedLinear`s in place.

    Loaded layers are quantised now; layers on meta become shells that a streamed loader fills with
    `QuantizedLinear.set_float_weight`. Returns the converted names.
    """
    if not is_fp8(dtype):
        raise ConfigurationError(
            f"Cannot convert weights to {dtype} at load: choose float8_e4m3fn (recommended) or float8_e5m2."
        )
    predicate = predicate or is_large_linear
    converted = [name for name, linear in _child_linears(module) if predicate(name, linear)]
    for name in converted:
        _replace(module, name, QuantizedLinear.from_linear(module.get_submodule(name), dtype))
    log.info("Converted %d Linear layers to %s", len(converted), dtype)
    return converted


def _stored(name: str, key_dtypes: Mapping[str, torch.dtype], key_shapes: Mapping[str, Sequence[int]]):
    """(shape, dtype) of the checkpoint tensor `name`."""
    return tuple(key_shapes[name]), key_dtypes[name]


def _check_scalar(key: str, spec: TensorSpec) -> None:
    shape, dtype = spec
    if math.prod(shape) != 1 or not dtype.is_floating_point:
        raise CheckpointError(
            f"{key} is {dtype} of shape {list(shape)}, but a per-tensor scale holds exactly one float. {FIX_HINT}"
        )


def _check_shape(key: str, spec: TensorSpec, expected: tuple[int, ...]) -> None:
    if spec[0] != tuple(expected):
        raise CheckpointError(f"{key} has shape {list(spec[0])}, expected {list(expected)}. {FIX_HINT}")


def _quantized_tensors(
    name: str, linear: nn.Linear, key_dtypes: Mapping[str, torch.dtype], key_shapes: Mapping[str, Sequence[int]]
) -> dict[str, TensorSpec] | None:
    """The stored tensors of Linear `name` if its weight is stored quantised, else None; CheckpointError if unusable."""
    weight_key = f"{name}.weight"
    weight_dtype = key_dtypes.get(weight_key)
    if weight_dtype is None or (weight_dtype.is_floating_point and not is_fp8(weight_dtype)):
        return None
    companions = FP8_SCALE_NAMES + FP8_INPUT_SCALE_NAMES + NVFP4_REQUIRED + NVFP4_OPTIONAL + (COMFY_QUANT,)
    present = {s: _stored(f"{name}.{s}", key_dtypes, key_shapes) for s in companions if f"{name}.{s}" in key_dtypes}
    weight = _stored(weight_key, key_dtypes, key_shapes)
    out_features, in_features = linear.out_features, linear.in_features

    if is_fp8(weight_dtype):
        _check_shape(weight_key, weight, (out_features, in_features))
        scales = [s for s in FP8_SCALE_NAMES if s in present]
        if len(scales) > 1:
            raise CheckpointError(f"{name} has both {name}.scale_weight and {name}.weight_scale. {FIX_HINT}")
        used = scales + [s for s in FP8_INPUT_SCALE_NAMES if s in present]
        for s in used:
            _check_scalar(f"{name}.{s}", present[s])
    elif weight_dtype == torch.int8:
        _check_shape(weight_key, weight, (out_features, in_features))
        if "weight_scale" not in present:
            raise CheckpointError(f"{weight_key} is stored as int8 but {name}.weight_scale is missing. {FIX_HINT}")
        shape, dtype = present["weight_scale"]
        if math.prod(shape) not in (1, out_features) or len(shape) > 2 or not dtype.is_floating_point:
            raise CheckpointError(
                f"{name}.weight_scale is {dtype} of shape {list(shape)}; an int8 weight scale is one float per tensor "
                f"or one per output row ({out_features}). {FIX_HINT}"
            )
        used = ["weight_scale"]
    elif weight_dtype == torch.uint8:
        missing = [f"{name}.{s}" for s in NVFP4_REQUIRED if s not in present]
        if missing:
            raise CheckpointError(
                f"{weight_key} is stored as uint8 (NVFP4) but {', '.join(missing)} is missing. {FIX_HINT}"
            )
        try:
            layout = nvfp4_layout_of(weight[0], out_features, in_features)
        except ValueError as exc:
            raise CheckpointError(f"{weight_key}: {exc}. {FIX_HINT}") from None
        _, scale_shape = nvfp4_storage_shapes(out_features, in_features, layout)
        block_scales = present["weight_scale"]
        _check_shape(f"{name}.weight_scale", block_scales, scale_shape)
        if block_scales[1] not in (torch.float8_e4m3fn, torch.uint8):
            raise CheckpointError(f"{name}.weight_scale is {block_scales[1]}, expected float8_e4m3fn. {FIX_HINT}")
        _check_scalar(f"{name}.weight_scale_2", present["weight_scale_2"])
        if "input_scale" in present:
            _check_scalar(f"{name}.input_scale", present["input_scale"])
        if "pre_quant_scale" in present:
            _check_shape(f"{name}.pre_quant_scale", present["pre_quant_scale"], (in_features,))
        used = list(NVFP4_REQUIRED) + [s for s in NVFP4_OPTIONAL if s in present]
    else:
        raise CheckpointError(
            f"{weight_key} is stored as {weight_dtype}, a weight quantisation VideosDGX does not read "
            "(supported: fp8 e4m3fn/e5m2, scaled fp8, int8 with a weight scale, NVFP4). Use the bf16, fp8 or NVFP4 "
            "release of this model."
        )
    if COMFY_QUANT in present:
        used.append(COMFY_QUANT)
    return {"weight": weight, **{s: present[s] for s in used}}


def swap_linears_for_checkpoint(
    module: nn.Module, key_dtypes: Mapping[str, torch.dtype], key_shapes: Mapping[str, Sequence[int]],
    *, source: str = "the checkpoint", scaled: bool = False,
) -> list[str]:
    """Replace exactly the `nn.Linear`s whose weight the checkpoint stores as fp8, int8 or NVFP4 with
    `QuantizedLinear`s.

    Keys are relative to `module` (prefixes already stripped). After the swap the module's state-dict names, shapes
    and dtypes equal the stored ones for those layers, so a streamed loader copies tensors in by name; biases keep
    the module's dtype. Works on meta. Returns the swapped names; CheckpointError names `source` and the offending
    layer. In a file marked scaled fp8 (`scaled`: ComfyUI's `scaled_fp8` marker) every fp8 weight needs its scale:
    without it the layer would silently run on unscaled weights.
    """
    planned = []
    for name, linear in _child_linears(module):
        try:
            tensors = _quantized_tensors(name, linear, key_dtypes, key_shapes)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        if tensors is not None:
            planned.append((name, linear, tensors))
    unscaled = [name for name, _, tensors in planned
                if is_fp8(tensors["weight"][1]) and not any(s in tensors for s in FP8_SCALE_NAMES)]
    if unscaled and scaled:
        raise CheckpointError(
            f"{source} is a scaled fp8 file, but {len(unscaled)} fp8 layer(s) have no weight scale (first: "
            f"{', '.join(f'{n}.weight' for n in unscaled[:3])}); they would run on unscaled weights and give wrong "
            f"results. The file is incomplete or was edited: {FIX_HINT}"
        )
    for name, linear, tensors in planned:
        layer = QuantizedLinear(
            linear.in_features, linear.out_features, tensors, bias=False, device=linear.weight.device
        )
        layer.bias = linear.bias
        _replace(module, name, layer)
    log.info("Checkpoint stores %d Linear weights quantised; kept them quantised", len(planned))
    return [name for name, _, _ in planned]


def compute_dtype(layer: nn.Module) -> torch.dtype:
    """The dtype a Linear runs in: its weight's, or its bias's when the weight is stored quantised (fp8 / fp4)."""
    dtype = layer.weight.dtype
    return dtype if dtype.itemsize > 1 or layer.bias is None else layer.bias.dtype


def dense_weight(layer: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """A Linear's weight as a dense `dtype` tensor (a temporary for quantised layers, scales applied), with the
    deltas of the LoRAs applied to it (runtime/lora.py) added."""
    if isinstance(layer, QuantizedLinear):
        weight = layer.dequantized_weight(dtype, layer.weight.device)
    else:
        weight = layer.weight.to(dtype)
    patch = getattr(layer, "lora_patch", None)
    delta = None if patch is None else patch.dense_delta(dtype)
    return weight if delta is None else weight + delta


class StaticInputFp8Linear(nn.Module):
    """fp8 Linear whose input is quantised with stored scales (MAGI-1's fp8 release, magi1.md §2.3).

    Tensors (checkpoint names): `weight` [1, out, in] e4m3, `weight_scale` [1], `input_scale` ([in] or [1]) and,
    for the "smoothed" form, `smooth_scale` [1, in]. The input is divided by `smooth_scale` if present, else by
    `input_scale`, clamped to ±448, rounded to bf16 and then to e4m3 (the reference's double rounding); the product
    is scaled by `input_scale[0] * weight_scale[0]` (the reference's GEMM reads one value of each scale). Uses
    `torch._scaled_mm` where the device runs fp8 matmuls, else an exact float32 emulation. The output is bf16, as the
    reference's.
    """

    def __init__(self, in_features: int, out_features: int, smooth: bool, device: torch.device | str | None = None):
        super().__init__()
        self.in_features, self.out_features, self.smooth = in_features, out_features, smooth
        f32 = torch.float32
        params = {"weight": ((1, out_features, in_features), torch.float8_e4m3fn), "weight_scale": ((1,), f32),
                  "input_scale": ((1,) if smooth else (in_features,), f32)}
        if smooth:
            params["smooth_scale"] = ((1, in_features), f32)
        for name, (shape, dtype) in params.items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, dtype=dtype, device=device),
                                                       requires_grad=False))
        self.declared_dtype_tensors = tuple(params)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        fp8_max = torch.finfo(torch.float8_e4m3fn).max
        divisor = (self.smooth_scale if self.smooth else self.input_scale).float()
        return (x.float() / divisor).clamp(-fp8_max, fp8_max).bfloat16().to(torch.float8_e4m3fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = self.quantize_input(x).reshape(-1, self.in_features)
        w8 = self.weight[0]
        a_scale, b_scale = self.input_scale.flatten()[:1].float(), self.weight_scale.flatten()[:1].float()
        if fp8_matmul_supported(x.device) and self.in_features % 16 == 0 and self.out_features % 16 == 0:
            y = torch._scaled_mm(xq, w8.t(), scale_a=a_scale.reshape(()), scale_b=b_scale.reshape(()),
                                 out_dtype=torch.bfloat16)
        else:
            y = ((xq.float() @ w8.float().t()) * (a_scale * b_scale)).bfloat16()
        return y.reshape(*x.shape[:-1], self.out_features)
