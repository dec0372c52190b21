"""Which MAGI-1 weights stay float32 whatever the compute dtype (the reference's high-precision set)."""

from torch import nn


def keep_float32(module: nn.Module) -> nn.Module:
    """Mark every parameter of `module` (built in float32) to keep its declared dtype when the loader casts."""
    for sub in module.modules():
        sub.declared_dtype_tensors = tuple(name for name, _ in sub.named_parameters(recurse=False))
    return module
