"""R2V reference images: fitted into the video frame (Lanczos, white padding), then VAE-encoded (skyreels_v3.md §2)."""

from __future__ import annotations

import torch

from videosdgx.runtime.errors import ConfigurationError
from videosdgx.skyreels_v3.variants import MAX_REFERENCES

LANCZOS_LOBES = 3


def _lanczos(x: torch.Tensor) -> torch.Tensor:
    inside = x.abs() < LANCZOS_LOBES
    return torch.where(inside, torch.sinc(x) * torch.sinc(x / LANCZOS_LOBES), torch.zeros_like(x))


def lanczos_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """`[out, in]` float64 weights of a Lanczos-3 resize along one axis, with Pillow's support widening on
    downscales (the filter stretches by in/out) and its per-pixel normalisation."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centers = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    first = (centers - LANCZOS_LOBES * stretch + 0.5).floor().clamp(min=0)
    last = (centers + LANCZOS_LOBES * stretch + 0.5).floor().clamp(max=in_size)
    sources = torch.arange(in_size, dtype=torch.float64)
    weights = _lanczos((sources[None] - centers[:, None] + 0.5) / stretch)
    weights = weights * ((sources[None] >= first[:, None]) & (sources[None] < last[:, None]))
    return weights / weights.sum(dim=1, keepdim=True)


def lanczos_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`[C, H, W]` in 0..1 -> `[C, height, width]` (float32) by separable Lanczos-3: width first, clipped to
    0..1 in between, then height (Pillow's order; it rounds to 8 bits in between, we keep floats)."""
    cols = lanczos_matrix(image.shape[2], width)
    rows = lanczos_matrix(image.shape[1], height)
    return (rows @ (image.double() @ cols.T).clamp(0, 1)).clamp(0, 1).float()


def fit_reference(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """IMAGE `[1, H, W, 3]` (0..1) -> `[3, height, width]` in [-1, 1]: scaled to fit inside the frame keeping its
    aspect ratio, centred on white (the official `resize_ref_images`)."""
    if image.ndim != 4 or image.shape[-1] < 3 or min(image.shape[1:3]) < 1:
        raise ConfigurationError(f"A reference image must be an IMAGE [1, height, width, 3]; got {list(image.shape)}.")
    pixels = image[0, :, :, :3].permute(2, 0, 1).float()
    ratio = pixels.shape[2] / pixels.shape[1]
    if ratio > width / height:
        new_w, new_h = width, max(1, int(width / ratio))
    else:
        new_w, new_h = max(1, int(height * ratio)), height
    resized = lanczos_resize(pixels, new_h, new_w)
    canvas = torch.ones(3, height, width)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[:, top:top + new_h, left:left + new_w] = resized
    return canvas * 2 - 1


def check_references(references: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> None:
    """Refuse a reference list the model cannot take, before anything is loaded."""
    if not references:
        raise ConfigurationError("SkyReels V3 R2V needs 1 to 4 reference images (--reference a.png --reference b.png).")
    if len(references) > MAX_REFERENCES:
        raise ConfigurationError(
            f"SkyReels V3 R2V takes at most {MAX_REFERENCES} reference images; {len(references)} were given. "
            "Drop the extra ones."
        )
    for index, image in enumerate(references, 1):
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] < 3 or min(image.shape[1:3]) < 1:
            shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ConfigurationError(f"Reference image {index} is not an IMAGE [1, height, width, 3] (got {shape}).")


def encode_references(vae, references, width: int, height: int, generator: torch.Generator) -> torch.Tensor:
    """`[1, z, 4, h, w]` normalised latents: one posterior sample per reference (drawn from `generator` in
    order), then all-zero frames up to 4."""
    check_references(references)
    parameter = next(vae.parameters())
    latents = []
    for image in references:
        pixels = fit_reference(image, width, height)[None, :, None]
        with torch.no_grad():
            latents.append(vae.encode(pixels.to(parameter.device, parameter.dtype), generator).float().cpu())
    pad = torch.zeros_like(latents[0])
    return torch.cat(latents + [pad] * (MAX_REFERENCES - len(latents)), dim=2)


def size_from_reference(image: torch.Tensor, resolution: str) -> tuple[int, int]:
    """`(width, height)` of the bucket closest to the first reference's aspect ratio."""
    from videosdgx.skyreels_v3.buckets import bucket_size

    height, width = bucket_size(image.shape[1], image.shape[2], resolution)
    return width, height

