"""LTX-2 multi-modal guidance on denoised (x0) predictions: CFG, STG, modality isolation, rescale.

ltx-core `MultiModalGuider.calculate` @ 400fd310 (the same formula as diffusers `LTX2Pipeline`):
`pred = cond + (cfg - 1)(cond - uncond) + stg (cond - perturbed) + (modality - 1)(cond - isolated)`, then with
rescale r: `pred *= r * std(cond) / std(pred) + 1 - r` (std per sample here; the two references agree for one
sample: ltx-core takes it over the whole batch, diffusers per sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GuiderParams:
    """One modality's guidance. Defaults: no guidance (distilled models)."""

    cfg: float = 1.0
    stg: float = 0.0
    modality: float = 1.0
    rescale: float = 0.0

    @property
    def needs_uncond(self) -> bool:
        return self.cfg != 1.0

    @property
    def needs_perturbed(self) -> bool:
        return self.stg != 0.0

    @property
    def needs_isolated(self) -> bool:
        return self.modality != 1.0


def guide(params: GuiderParams, cond: torch.Tensor, uncond: torch.Tensor | None = None,
          perturbed: torch.Tensor | None = None, isolated: torch.Tensor | None = None) -> torch.Tensor:
    """Guided x0 from the passes `params` asks for (others may be None), float32."""
    cond = cond.float()
    pred = cond
    if params.needs_uncond:
        pred = pred + (params.cfg - 1) * (cond - uncond.float())
    if params.needs_perturbed:
        pred = pred + params.stg * (cond - perturbed.float())
    if params.needs_isolated:
        pred = pred + (params.modality - 1) * (cond - isolated.float())
    if params.rescale:
        dims = tuple(range(1, cond.ndim))
        factor = cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True)
        pred = pred * (params.rescale * factor + 1 - params.rescale)
    return pred
