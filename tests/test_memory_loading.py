"""Memory a unified-memory machine can trust: file pages leave the page cache after loading, fp8 conversion while
streaming, dropping weights and streaming them back into the same module."""

import os

import pytest
import torch

from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.runtime.errors import InsufficientMemoryError
from videosdgx.runtime.fp8 import quantize_fp8
from videosdgx.runtime.loading import load_module, set_tensor
from videosdgx.runtime.model_files import (LoadRequest, drop_weights, reload_weights, resident_weight_bytes,
                                           weights_dropped)
from videosdgx.runtime.page_cache import resident_fraction
from videosdgx.runtime.quantized_linear import QuantizedLinear, quantize_module_linears
from videosdgx.testing.files import save_safetensors
from videosdgx.testing.wan import tiny_dit_config, write_wan_models
from videosdgx.wan.loaders import load_dit, load_text_encoder
from videosdgx.wan.transformer import WanModel


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    files = write_wan_models("wan2.1-t2v-1.3b", tmp_path_factory.mktemp("models"))
    for path in (*files.dit, files.text_encoder):
        flush(path)
    return files


def flush(path) -> None:
    """Write a freshly made file to disk: the page cache cannot drop dirty pages (a downloaded model is clean)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dit_inputs():
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(1, 16, 2, 8, 12, generator=generator), torch.tensor([700.0]),
            torch.randn(1, 9, 64, generator=generator))


def test_loaded_file_leaves_the_page_cache(files):
    path = files.dit[0]
    with open(path, "rb") as f:
        f.read()  # the whole file is in the page cache now
    assert resident_fraction(path) > 0.9
    load_dit(path, LoadRequest())
    assert resident_fraction(path) <= 0.05


def test_each_released_tensor_leaves_the_page_cache_before_the_file_is_closed(tmp_path):
    path = save_safetensors(tmp_path / "big.safetensors", {f"w{i}": torch.randn(256, 1024) for i in range(8)})
    flush(path)
    with open_checkpoint(path) as checkpoint:
        for key in checkpoint.keys():
            checkpoint.get(key).clone()
        assert resident_fraction(path) > 0.9
        for key in checkpoint.keys():
            checkpoint.release(key)
        assert resident_fraction(path) <= 0.05


def test_chunked_fp8_quantisation_is_elementwise_identical(monkeypatch):
    w = torch.randn(64, 300, dtype=torch.bfloat16) * 3
    whole, whole_scale = quantize_fp8(w)
    monkeypatch.setattr("videosdgx.runtime.fp8.QUANTIZE_CHUNK", 1000)
    chunked, chunked_scale = quantize_fp8(w)
    assert torch.equal(whole_scale, chunked_scale)
    assert torch.equal(whole.view(torch.uint8), chunked.view(torch.uint8))


def test_fp8_while_streaming_equals_fp8_after_loading(files):
    path = files.dit[0]
    request = LoadRequest(dtype=torch.bfloat16)
    streamed = load_dit(path, LoadRequest(dtype=torch.bfloat16, weight_format="fp8_e4m3fn")).module
    after = load_dit(path, request).module
    converted = quantize_module_linears(after)
    assert len(converted) == 26
    for name in converted:
        ours, reference = streamed.get_submodule(name), after.get_submodule(name)
        assert isinstance(ours, QuantizedLinear) and ours.weight.dtype == torch.float8_e4m3fn
        assert torch.equal(ours.weight.view(torch.uint8), reference.weight.view(torch.uint8))
        assert torch.equal(ours.weight_scale, reference.weight_scale)
    assert not weights_dropped(streamed)


def test_fp8_while_streaming_never_builds_the_full_precision_model(files, monkeypatch):
    """Every float weight of a converted Linear goes straight from the file to fp8: no bf16 copy is ever set."""
    cfg = tiny_dit_config("t2v", "2.1", False)
    with torch.device("meta"):
        model = WanModel(cfg)
    quantize_module_linears(model)
    linears = {name for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    stored = []
    monkeypatch.setattr("videosdgx.runtime.loading.set_tensor",
                        lambda module, name, value: stored.append(name) or set_tensor(module, name, value))
    with open_checkpoint(files.dit[0]) as checkpoint:
        load_module(model, checkpoint, dtype=torch.bfloat16)
    assert not any(name.rpartition(".")[0] in linears and name.endswith(".weight") for name in stored)
    assert all(model.get_submodule(name).weight.dtype == torch.float8_e4m3fn for name in linears)


@pytest.mark.parametrize("weight_format", ["default", "fp8_e4m3fn"])
def test_dropped_weights_stream_back_into_the_same_module(files, weight_format):
    model = load_dit(files.dit[0], LoadRequest(weight_format=weight_format)).module
    with torch.no_grad():
        expected = model(*dit_inputs())
    size = resident_weight_bytes(model)
    assert drop_weights(model) == size > 0
    assert resident_weight_bytes(model) == 0 and weights_dropped(model)
    assert all(p.is_meta for p in model.parameters())
    seen = []
    reload_weights(model, progress=lambda done, total: seen.append((done, total)))
    assert resident_weight_bytes(model) == size and not weights_dropped(model)
    assert seen and seen[-1][0] == seen[-1][1]
    with torch.no_grad():
        assert torch.equal(model(*dit_inputs()), expected)


def test_text_encoder_reloads_too(files):
    encoder = load_text_encoder(files.text_encoder, LoadRequest(), files.tokenizer).encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    drop_weights(encoder)
    reload_weights(encoder)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_only_loaded_modules_can_drop_their_weights():
    with pytest.raises(ValueError, match="not loaded by load_model_file"):
        drop_weights(torch.nn.Linear(2, 2))


def test_make_room_runs_before_the_memory_check(files, monkeypatch):
    calls = []
    monkeypatch.setattr("videosdgx.runtime.model_files.check_memory",
                        lambda required, device, what: calls.append(("check", required)))
    request = LoadRequest(make_room=lambda required, device: calls.append(("room", required)))
    model = load_dit(files.dit[0], request).module
    assert [c[0] for c in calls] == ["room", "check"] and calls[0][1] == resident_weight_bytes(model)
    drop_weights(model)

    def refuse(required, device, what):
        raise InsufficientMemoryError(f"{what} needs {required}")

    monkeypatch.setattr("videosdgx.runtime.model_files.check_memory", refuse)
    with pytest.raises(InsufficientMemoryError, match="needs"):
        reload_weights(model)
    assert weights_dropped(model)
