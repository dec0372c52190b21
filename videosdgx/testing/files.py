"""Writing generated state dicts to disk as safetensors or restricted-pickle files (and as installed folders)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn


def random_like_state_dict(module: nn.Module, seed: int, std: float = 0.5) -> dict[str, torch.Tensor]:
    """A state dict with the module's names and shapes, filled with seeded random values (norm scales near 1)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in module.state_dict().items():
        values = torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * std
        if name.endswith(("gamma", "norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "layer_norm.weight",
                          "norm_q.weight", "norm_k.weight", "norm_k_img.weight", "final_layer_norm.weight")):
            values = 1.0 + 0.1 * values
        out[name] = values.to(tensor.dtype if tensor.dtype.is_floating_point else torch.float32)
    return out


def randomize_reference(model: nn.Module, seed: int) -> nn.Module:
    """Random values for every parameter of a reference model (diffusers zero-inits some): norm scales near 1,
    matrices ~1/sqrt(fan-in), the rest small. Returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.2 * noise)
            elif param.ndim >= 2 and not name.endswith("scale_shift_table"):
                param.copy_(noise / param[0].numel() ** 0.5)
            else:
                param.copy_(0.3 * noise)
    return model.eval()


def save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def save_sharded(folder: Path, tensors: dict[str, torch.Tensor], shards: int,
                 stem: str = "diffusion_pytorch_model") -> Path:
    """Split `tensors` over `shards` files plus a `<stem>.safetensors.index.json`, like the official repos."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    weight_map = {}
    for i in range(shards):
        file = f"{stem}-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[i::shards]}
        save_safetensors(folder / file, part)
        weight_map.update({n: file for n in part})
    index = folder / f"{stem}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    return index


def save_folder_entry(models_dir: Path, entry, tensors: dict[str, torch.Tensor], shards: int = 1,
                      stem: str = "diffusion_pytorch_model", extra: dict[str, str] | None = None) -> Path:
    """A manifest folder entry as install.py leaves it in `models_dir`: the weights as one `<stem>.safetensors` or
    as shards + index, the `extra` text files (config.json ...), and the install record naming them all."""
    from videosdgx.install.folders import FolderFile, write_record

    folder = Path(models_dir) / entry.folder / entry.filename
    if shards > 1:
        save_sharded(folder, tensors, shards, stem)
    else:
        save_safetensors(folder / f"{stem}.safetensors", tensors)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    write_record(folder, entry, [FolderFile(p.name, p.stat().st_size) for p in sorted(folder.iterdir())
                                 if p.is_file() and not p.name.startswith(".")])
    return folder
