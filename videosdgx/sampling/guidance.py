"""Classifier-free guidance, with the conditional and unconditional passes batched into one forward
when their inputs line up."""

from collections.abc import Callable, Mapping

import torch


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Guided prediction `uncond + scale·(cond - uncond)`; scale 1 returns `cond`'s values."""
    return uncond + scale * (cond - uncond)


def batch_pair(
    cond: Mapping[str, torch.Tensor], uncond: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor] | None:
    """Concatenate matching conditional / unconditional model inputs along the batch dimension
    (cond first), or None when the keys or any shapes differ and two forwards are needed."""
    if cond.keys() != uncond.keys() or any(cond[k].shape != uncond[k].shape for k in cond):
        return None
    return {k: torch.cat([cond[k], uncond[k]]) for k in cond}


def cfg_forward(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    cond: Mapping[str, torch.Tensor],
    uncond: Mapping[str, torch.Tensor],
    scale: float,
    batched: bool = True,
) -> torch.Tensor:
    """Guided output of `model(x, **inputs)`, where `cond` / `uncond` hold every batched model input other
    than x (text context, image latents, ...).

    Scale 1 runs only the conditional pass. Otherwise, with `batched` and inputs that line up, one forward
    on `cat([x, x])` is split in two; else two forwards run (less peak memory).
    """
    if scale == 1.0:
        return model(x, **cond)
    pair = batch_pair(cond, uncond) if batched else None
    if pair is None:
        return cfg(model(x, **cond), model(x, **uncond), scale)
    out_cond, out_uncond = model(torch.cat([x, x]), **pair).chunk(2)
    return cfg(out_cond, out_uncond, scale)
