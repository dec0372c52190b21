"""Damaged and misleading model files: `videosdgx inspect` must call each one unusable with its cause (one table),
and the loaders' path (`load_model_file`) must refuse the ones that would otherwise load wrong weights (another)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from bad_inputs import attempt, warm_up

from videosdgx.cli import main
from videosdgx.runtime.errors import CheckpointError
from videosdgx.runtime.model_files import LoadRequest
from videosdgx.testing.files import save_safetensors, save_sharded
from videosdgx.testing.wan import _dit_state, _store, tiny_dit_config
from videosdgx.wan.loaders import load_dit

GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}

warm_up()


def raw_safetensors(header: object, data: bytes = b"\0" * 16, header_bytes: bytes | None = None) -> bytes:
    encoded = header_bytes if header_bytes is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def writer(content: bytes, name: str = "model.safetensors") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path

    return write


def fifo(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        os.mkfifo(path)
        return path

    return make


def link(target: str, name: str = "model.safetensors") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.symlink_to(folder / target)
        return path

    return make


def looped(folder: Path) -> Path:
    (folder / "a.safetensors").symlink_to(folder / "b.safetensors")
    (folder / "b.safetensors").symlink_to(folder / "a.safetensors")
    return folder / "a.safetensors"


def index(content: object, shards: dict[str, bytes] | None = None, raw: bytes | None = None) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        for name, data in (shards or {}).items():
            (folder / name).write_bytes(data)
        path = folder / "model.safetensors.index.json"
        path.write_bytes(raw if raw is not None else json.dumps(content).encode())
        return path

    return make


def folder_with(*names: str, directory: str | None = None) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        models = root / "models"
        models.mkdir()
        for name in names:
            (models / name).write_bytes(raw_safetensors(GOOD))
        if directory:
            (models / directory).mkdir()
        return models

    return make


def torch_saved(value: object, name: str = "model.pth") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        torch.save(value, path)
        return path

    return make


def entry(**fields: object) -> bytes:
    return raw_safetensors({"w": {**GOOD["w"], **fields}})


ONE_SHARD = raw_safetensors(GOOD)
INSPECT_CASES = {
    "entry-a-number": (writer(raw_safetensors({"w": 5})), ("'w'", "not an object")),
    "entry-a-list": (writer(raw_safetensors({"w": ["F32", [2], [0, 8]]})), ("'w'", "not an object")),
    "offsets-missing": (writer(raw_safetensors({"w": {"dtype": "F32", "shape": [2, 2]}})), ("data_offsets None",)),
    "offsets-negative": (writer(entry(data_offsets=[-16, 0])), ("data_offsets [-16, 0]",)),
    "offsets-one-number": (writer(entry(data_offsets=[16])), ("data_offsets [16]",)),
    "offsets-strings": (writer(entry(data_offsets=["0", "16"])), ("data_offsets ['0', '16']",)),
    "offsets-reversed": (writer(entry(data_offsets=[16, 0])), ("claims -16 bytes",)),
    "offsets-past-the-end": (writer(entry(data_offsets=[1000, 1016])), ("truncated",)),
    "offsets-overlapping": (writer(raw_safetensors({"a": GOOD["w"], "b": {**GOOD["w"], "data_offsets": [8, 24]}},
                                                   b"\0" * 24)), ("'a' and 'b' overlap",)),
    "size-mismatch": (writer(entry(shape=[4, 4])), ("claims 16 bytes", "needs 64")),
    "dtype-mismatch": (writer(entry(dtype="F64")), ("claims 16 bytes", "needs 32")),
    "dtype-unknown": (writer(entry(dtype="F4")), ("dtype 'F4'",)),
    "dtype-missing": (writer(raw_safetensors({"w": {"shape": [2, 2], "data_offsets": [0, 16]}})), ("dtype None",)),
    "shape-negative": (writer(entry(shape=[-2, -2])), ("shape [-2, -2]",)),
    "shape-a-string": (writer(entry(shape="2x2")), ("shape '2x2'",)),
    "shape-floats": (writer(entry(shape=[2.0, 2.0])), ("shape [2.0, 2.0]",)),
    "duplicate-key-in-header": (writer(raw_safetensors(None, header_bytes=(
        b'{"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, '
        b'"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}'))), ("lists 'w' twice",)),
    "metadata-a-list": (writer(raw_safetensors({**GOOD, "__metadata__": [1]})), ("__metadata__",)),
    "metadata-values-numbers": (writer(raw_safetensors({**GOOD, "__metadata__": {"a": 1}})), ("__metadata__",)),
    "header-a-list": (writer(raw_safetensors([1, 2])), ("not a safetensors file",)),
    "header-a-json-string": (writer(raw_safetensors(None, header_bytes=b'"{}"')), ("not a safetensors file",)),
    "header-not-utf8": (writer(raw_safetensors(None, header_bytes=b"\xff\xfe{}")), ("not a safetensors file",)),
    "header-json-broken": (writer(raw_safetensors(None, header_bytes=b'{"w": ')), ("corrupt safetensors header",)),
    "header-length-zero": (writer(struct.pack("<Q", 0) + b"{}"), ("header length field 0",)),
    "header-length-huge": (writer(struct.pack("<Q", 1 << 60) + b"{}"), ("header length field",)),
    "zero-bytes": (writer(b""), ("0 bytes",)),
    "five-bytes": (writer(b"abcde"), ("5 bytes",)),
    "header-cut-off": (writer(raw_safetensors(GOOD)[:30]), ("truncated",)),
    "data-cut-off": (writer(raw_safetensors(GOOD)[:-4]), ("truncated", "expected")),
    "html-page": (writer(b"<html>404 Not Found</html>" * 5), ("not a safetensors file",)),
    "zip-named-safetensors": (writer(b"PK\x03\x04" + b"\0" * 100), ("zip archive", ".pth name")),
    "binary-junk-short-length": (writer(struct.pack("<Q", 64) + b"\x00" * 100), ("not a safetensors file",)),
    "not-found": (lambda folder: folder / "absent.safetensors", ("not found",)),
    "dangling-symlink": (link("gone.safetensors"), ("symbolic link to", "does not exist")),
    "symlink-loop": (looped, ("symbolic link loop",)),
    "fifo-named-pth": (fifo("model.pth"), ("not a regular file",)),
    "fifo-named-safetensors": (fifo("model.safetensors"), ("not a regular file",)),
    "folder-with-fifo-shard": (lambda folder: fifo("x.safetensors")(folder_with("a.safetensors")(folder)),
                               ("not a regular file",)),
    "folder-with-directory-shard": (folder_with("a.safetensors", directory="b.safetensors"), ("is a folder",)),
    "folder-without-safetensors": (folder_with(), ("no .safetensors files",)),
    "index-a-list": (index([1, 2]), ("not a valid shard index", "weight_map")),
    "index-weight-map-list": (index({"weight_map": ["a.safetensors"]}), ("weight_map",)),
    "index-weight-map-empty": (index({"weight_map": {}}), ("non-empty",)),
    "index-values-numbers": (index({"weight_map": {"w": 1}}), ("is not the name of a file",)),
    "index-value-escapes": (index({"weight_map": {"w": "../outside.safetensors"}}), ("is not the name of a file",)),
    "index-shard-missing": (index({"weight_map": {"w": "a.safetensors"}}), ("lists shards that are not in",)),
    "index-not-json": (index(None, raw=b"{weight_map"), ("not a valid shard index",)),
    "index-binary": (index(None, raw=b"\xff\xfe\x00"), ("not a valid shard index",)),
    "index-missing": (lambda folder: folder / "model.safetensors.index.json", ("not found",)),
    "index-shard-fifo": (lambda folder: fifo_shard_index(folder), ("not a regular file",)),
    "same-tensor-in-two-shards": (index({"weight_map": {"w": "a.safetensors", "v": "b.safetensors"}},
                                        {"a.safetensors": ONE_SHARD, "b.safetensors": ONE_SHARD}),
                                  ("stored both in",)),
    "pth-plain-pickle": (writer(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.", "model.pth"),
                         ("Refused to load", "never executes code")),
    "pth-not-tensors": (torch_saved({"a": [1, 2]}), ("flat dict of tensors",)),
    "pth-is-safetensors": (writer(raw_safetensors(GOOD), "model.pth"), ("rename it to model.safetensors",)),
    "pth-truncated": (lambda folder: truncated_pth(folder), ("not a PyTorch file",)),
    "empty-header": (writer(raw_safetensors({}, b"")), ("",)),
    "unknown-model": (writer(raw_safetensors(GOOD)), ("",)),
}


def fifo_shard_index(folder: Path) -> Path:
    os.mkfifo(folder / "p.safetensors")
    return index({"weight_map": {"w": "p.safetensors"}})(folder)


def truncated_pth(folder: Path) -> Path:
    path = torch_saved({"w": torch.zeros(64)})(folder)
    path.write_bytes(path.read_bytes()[:200])
    return path


def release(path: Path) -> Callable[[], None]:
    """Unblock a thread stuck opening the FIFO `path` (open it for writing, then close it)."""

    def unblock() -> None:
        for candidate in [path, *path.glob("*.safetensors")] if path.is_dir() else [path]:
            try:
                os.close(os.open(candidate, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    return unblock


@pytest.mark.parametrize("name", INSPECT_CASES)
def test_inspect_bad_file(name, tmp_path, caplog, capsys):
    make, words = INSPECT_CASES[name]
    path = make(tmp_path) or tmp_path / "model.safetensors.index.json"
    tried = attempt(lambda: main(["inspect", str(path)]), tmp_path, caplog, capsys,
                    unblock=release(path))
    tried.judge(1, ("UNUSABLE", *words), allowed=())


def tiny_dit(tmp_path: Path, name: str = "wan_fp8_scaled.safetensors") -> dict[str, torch.Tensor]:
    return _store(_dit_state(tiny_dit_config("t2v", "2.1", False), 0), name)


def drop_scales(count: int | None):
    def change(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scales = [k for k in state if k.endswith(".scale_weight")][:count]
        return {k: v for k, v in state.items() if k not in scales}

    return change


def duplicated(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    key = next(k for k in state if k.startswith("blocks.0.") and k.endswith(".bias"))
    return {**state, f"model.diffusion_model.{key}": state[key].clone() + 1}


def wrong_scale_shape(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    key = next(k for k in state if k.endswith(".scale_weight"))
    return {**state, key: torch.ones(3)}


def missing_tensor(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("blocks.1.ffn.0.")}


LOADER_CASES = {
    "fp8-scaled-without-any-scale": (drop_scales(None), ("wan_fp8_scaled.safetensors", "scaled fp8 file",
                                                         "no weight scale")),
    "fp8-scaled-missing-one-scale": (drop_scales(1), ("scaled fp8 file", "1 fp8 layer(s) have no weight scale")),
    "fp8-scale-wrong-shape": (wrong_scale_shape, ("wan_fp8_scaled.safetensors", "exactly one float")),
    "key-stored-twice-under-two-prefixes": (duplicated, ("not a Wan diffusion model",)),
    "tensor-missing": (missing_tensor, ("tensors are missing", "blocks.1.ffn.0")),
}


@pytest.mark.parametrize("name", LOADER_CASES)
def test_loader_refuses_weights_that_cannot_be_right(name, tmp_path):
    change, words = LOADER_CASES[name]
    path = save_safetensors(tmp_path / "wan_fp8_scaled.safetensors", change(tiny_dit(tmp_path)))
    with pytest.raises(CheckpointError) as caught:
        load_dit(path, LoadRequest())
    missing = [w for w in words if w not in str(caught.value)]
    assert not missing, f"MESSAGE: {missing} not in {caught.value}"


def test_loader_refuses_a_tensor_in_two_shards(tmp_path):
    state = tiny_dit(tmp_path, "wan.safetensors")
    save_sharded(tmp_path / "dit", state, shards=2)
    first = sorted((tmp_path / "dit").glob("*-00001-*"))[0]
    key = next(iter(state))  # the first shard holds it too
    save_safetensors(tmp_path / "dit" / "stray.safetensors", {key: state[key]})
    with pytest.raises(CheckpointError, match="stored both in"):
        load_dit([first, tmp_path / "dit" / "stray.safetensors"], LoadRequest())


def test_intact_scaled_file_still_loads(tmp_path):
    path = save_safetensors(tmp_path / "wan_fp8_scaled.safetensors", tiny_dit(tmp_path))
    loaded = load_dit(path, LoadRequest())
    assert loaded.identity.family == "wan"


def test_loading_refuses_two_stored_keys_that_map_to_one_name(tmp_path):
    """The loader's own key mapping (map_checkpoint_keys, used by every load) refuses a name stored twice."""
    from torch import nn

    from videosdgx.runtime.checkpoint import open_checkpoint
    from videosdgx.runtime.loading import load_module

    weights = {"proj.weight": torch.zeros(2, 2), "model.diffusion_model.proj.weight": torch.ones(2, 2)}
    path = save_safetensors(tmp_path / "merged.safetensors", weights)
    with torch.device("meta"):
        module = nn.Module()
        module.proj = nn.Linear(2, 2, bias=False)
    with open_checkpoint(path) as checkpoint, pytest.raises(CheckpointError) as caught:
        load_module(module, checkpoint, key_map=lambda key: key.removeprefix("model.diffusion_model."))
    assert "stores 'proj.weight' twice" in str(caught.value) and "merged.safetensors" in str(caught.value)
