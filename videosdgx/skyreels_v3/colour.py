"""Colour matching of the talking avatar: each clip's per-frame CIE Lab mean and spread are moved to the
portrait's (the release's `match_and_blend_colors` at strength 1, with kornia 0.9's sRGB <-> Lab under D65; the
release pins no kornia version)."""

from __future__ import annotations

import torch

WHITE = (0.95047, 1.0, 1.08883)  # D65 reference white
RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
XYZ_TO_RGB = ((3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
              (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
              (0.0556466391351772, -0.2040413383665112, 1.0573110696453443))
EPSILON = 0.008856  # (6/29)^3
KAPPA = 7.787


def _mix(matrix: tuple, image: torch.Tensor) -> torch.Tensor:
    """A 3x3 colour matrix applied to `[N, 3, H, W]`."""
    return torch.einsum("ij,njhw->nihw", torch.tensor(matrix, dtype=image.dtype), image)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB `[N, 3, H, W]` in 0..1 -> Lab (L 0..100)."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _mix(RGB_TO_XYZ, linear) / torch.tensor(WHITE, dtype=rgb.dtype)[:, None, None]
    f = torch.where(xyz > EPSILON, xyz.clamp(min=EPSILON) ** (1 / 3), KAPPA * xyz + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab `[N, 3, H, W]` -> sRGB clipped to 0..1."""
    lightness, a, b = lab.unbind(1)
    fy = (lightness + 16) / 116
    f = torch.stack([a / 500 + fy, fy, (fy - b / 200).clamp(min=0)], dim=1)
    xyz = torch.where(f > 0.2068966, f ** 3, (f - 4 / 29) / KAPPA) * torch.tensor(WHITE, dtype=lab.dtype)[:, None, None]
    linear = _mix(XYZ_TO_RGB, xyz)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1)


def match_colours(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`video [1, 3, T, H, W]` and `reference [1, 3, 1, H, W]` in -1..1 -> the video with every frame's Lab mean and
    standard deviation (per channel) set to the reference's, in -1..1 (float32)."""
    frames = ((video[0].float() + 1) / 2).transpose(0, 1)  # [T, 3, H, W]
    source = rgb_to_lab(frames).flatten(2)
    target = rgb_to_lab((reference[0, :, 0].float()[None] + 1) / 2).flatten(2)
    source_std, source_mean = torch.std_mean(source, dim=-1, keepdim=True, unbiased=False)
    target_std, target_mean = torch.std_mean(target, dim=-1, keepdim=True, unbiased=False)
    corrected = (source - source_mean) * (target_std / source_std.clamp_min(1e-6)) + target_mean
    rgb = lab_to_rgb(corrected.view_as(frames))
    return (rgb.transpose(0, 1)[None] * 2 - 1).to(video.dtype)
