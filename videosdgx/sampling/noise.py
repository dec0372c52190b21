"""Seeded initial noise that is the same on every device."""

import torch


def seeded_noise(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal noise for `seed`, identical on every machine and device.

    Always drawn as float32 on the CPU from `torch.Generator("cpu").manual_seed(seed)`, then cast to `dtype`
    and moved to `device`. It equals `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))`
    and diffusers' `randn_tensor(shape, generator=<that CPU generator>)`, so parity runs can pass it to a
    diffusers pipeline as `latents=`. (The official Wan scripts draw on the GPU with a CUDA generator, whose
    numbers differ.)
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)
