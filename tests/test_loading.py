"""Streamed loading into modules built on the meta device."""

import pytest
import torch
from torch import nn

from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import CheckpointError
from videosdgx.runtime.loading import load_module
from videosdgx.testing.files import save_safetensors


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 6)
        self.blocks = nn.ModuleList([nn.Linear(6, 6) for _ in range(3)])
        self.register_buffer("table", torch.zeros(4))


def tiny_weights(seed=0):
    torch.manual_seed(seed)
    with torch.device("meta"):
        names = Tiny().state_dict()
    return {k: torch.randn(v.shape) for k, v in names.items()}


def test_streamed_load_matches_state_dict_load(tmp_path):
    weights = tiny_weights()
    path = save_safetensors(tmp_path / "tiny.safetensors", weights)
    with torch.device("meta"):
        model = Tiny()
    seen = []
    with open_checkpoint(path) as ckpt:
        load_module(model, ckpt, dtype=torch.float32, progress=lambda done, total: seen.append((done, total)))
    reference = Tiny()
    reference.load_state_dict(weights)
    x = torch.randn(2, 8)
    out = model.blocks[2](model.blocks[1](model.blocks[0](model.proj(x))))
    ref = reference.blocks[2](reference.blocks[1](reference.blocks[0](reference.proj(x))))
    assert torch.equal(out, ref) and torch.equal(model.table, weights["table"])
    assert all(p.device.type == "cpu" and not p.requires_grad for p in model.parameters())
    assert seen[-1][0] == seen[-1][1] == sum(v.numel() * 4 for v in weights.values())
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) == len(weights)


def test_dtype_cast_and_key_map(tmp_path):
    weights = {"model.diffusion_model." + k: v for k, v in tiny_weights().items()}
    weights["scaled_fp8"] = torch.zeros(0)
    path = save_safetensors(tmp_path / "prefixed.safetensors", weights)
    with torch.device("meta"):
        model = Tiny()
    key_map = lambda k: None if k == "scaled_fp8" else k.removeprefix("model.diffusion_model.")  # noqa: E731
    with open_checkpoint(path) as ckpt:
        load_module(model, ckpt, dtype=torch.bfloat16, key_map=key_map)
    assert model.proj.weight.dtype == torch.bfloat16
    assert torch.equal(model.proj.weight, weights["model.diffusion_model.proj.weight"].to(torch.bfloat16))


def test_fp8_storage_declared_by_module_is_kept(tmp_path):
    weights = tiny_weights()
    weights["proj.weight"] = weights["proj.weight"].to(torch.float8_e4m3fn)
    path = save_safetensors(tmp_path / "fp8.safetensors", weights)
    with torch.device("meta"):
        model = Tiny()
        model.proj.weight = nn.Parameter(torch.empty(6, 8, dtype=torch.float8_e4m3fn), requires_grad=False)
    with open_checkpoint(path) as ckpt:
        load_module(model, ckpt, dtype=torch.bfloat16)
    assert model.proj.weight.dtype == torch.float8_e4m3fn and model.proj.bias.dtype == torch.bfloat16
    assert torch.equal(model.proj.weight.float(), weights["proj.weight"].float())


def test_missing_tensors_named(tmp_path):
    weights = tiny_weights()
    del weights["blocks.2.weight"]
    path = save_safetensors(tmp_path / "partial.safetensors", weights)
    with torch.device("meta"):
        model = Tiny()
    with open_checkpoint(path) as ckpt, pytest.raises(CheckpointError, match=r"1 of 9 tensors are missing.*blocks\.2\.weight"):
        load_module(model, ckpt, what="Wan DiT")


def test_shape_mismatch_named(tmp_path):
    weights = tiny_weights()
    weights["proj.weight"] = torch.randn(6, 9)
    path = save_safetensors(tmp_path / "other.safetensors", weights)
    with torch.device("meta"):
        model = Tiny()
    with open_checkpoint(path) as ckpt, pytest.raises(CheckpointError, match=r"proj\.weight.*\[6, 9\].*\[6, 8\]"):
        load_module(model, ckpt)


def test_unexpected_tensors_strict_and_lenient(tmp_path):
    weights = tiny_weights()
    weights["extra.weight"] = torch.randn(2)
    path = save_safetensors(tmp_path / "extra.safetensors", weights)
    with torch.device("meta"):
        model = Tiny()
    with open_checkpoint(path) as ckpt:
        with pytest.raises(CheckpointError, match="does not use: extra.weight"):
            load_module(model, ckpt)
        load_module(model, ckpt, strict=False)
    assert model.proj.weight.device.type == "cpu"
