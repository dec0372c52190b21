"""Opening model files: validation of safetensors headers, shards and restricted pickles."""

import json
import pickle
import struct

import pytest
import torch

from videosdgx.runtime.checkpoint import open_checkpoint, read_safetensors_header
from videosdgx.runtime.errors import CheckpointError
from videosdgx.testing.files import save_safetensors, save_sharded


@pytest.fixture
def tensors():
    torch.manual_seed(0)
    return {"a.weight": torch.randn(4, 3), "b.bias": torch.randn(5).to(torch.bfloat16), "c": torch.arange(6)}


def test_open_reads_names_shapes_dtypes_and_values(tmp_path, tensors):
    path = save_safetensors(tmp_path / "m.safetensors", tensors, metadata={"config": "{}"})
    with open_checkpoint(path) as ckpt:
        assert set(ckpt.keys()) == set(tensors)
        assert ckpt.info("b.bias").dtype == torch.bfloat16 and ckpt.info("a.weight").shape == (4, 3)
        assert ckpt.metadata == {"config": "{}"}
        for key, value in tensors.items():
            assert torch.equal(ckpt.get(key), value)
        assert ckpt.nbytes == sum(v.numel() * v.element_size() for v in tensors.values())


def test_truncated_file_names_expected_and_actual_size(tmp_path, tensors):
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    full = path.stat().st_size
    path.write_bytes(path.read_bytes()[: full - 7])
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(path)
    message = str(err.value)
    assert "truncated" in message and f"{full:,}" in message and f"{full - 7:,}" in message
    assert str(path) in message and "install.py" in message


def test_truncated_inside_header(tmp_path, tensors):
    path = save_safetensors(tmp_path / "m.safetensors", tensors)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="truncated"):
        read_safetensors_header(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="0 bytes"):
        open_checkpoint(path)


def test_not_safetensors(tmp_path):
    path = tmp_path / "page.safetensors"
    path.write_text("<html>404 Not Found</html>" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        open_checkpoint(path)


def test_corrupt_json_header(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = b"{not json"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        open_checkpoint(path)


def test_tensor_size_mismatch_in_header(tmp_path):
    path = tmp_path / "lie.safetensors"
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(CheckpointError, match="claims 8 bytes"):
        open_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        open_checkpoint(tmp_path / "nope.safetensors")


def test_sharded_index_and_folder(tmp_path, tensors):
    index = save_sharded(tmp_path / "dit", tensors, shards=2)
    for source in (index, tmp_path / "dit"):
        with open_checkpoint(source) as ckpt:
            assert len(ckpt.files) == 2 and set(ckpt.keys()) == set(tensors)
            assert torch.equal(ckpt.get("a.weight"), tensors["a.weight"])


def test_index_with_missing_shard(tmp_path, tensors):
    index = save_sharded(tmp_path / "dit", tensors, shards=2)
    next(iter(sorted((tmp_path / "dit").glob("*-00002-*")))).unlink()
    with pytest.raises(CheckpointError, match="lists shards that are not in"):
        open_checkpoint(index)


def test_pth_weights_only_loads_plain_state_dict(tmp_path, tensors):
    path = tmp_path / "vae.pth"
    torch.save(tensors, path)
    with open_checkpoint(path) as ckpt:
        assert torch.equal(ckpt.get("a.weight"), tensors["a.weight"])
        assert ckpt.info("c").dtype == torch.int64


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pth_needing_code_is_refused_and_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="never executes code"):
        open_checkpoint(path)
    assert "this must never run" not in capsys.readouterr().out


def test_raw_pickle_with_pth_name_is_refused(tmp_path):
    path = tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    with pytest.raises(CheckpointError):
        open_checkpoint(path)


def test_truncated_pth(tmp_path, tensors):
    path = tmp_path / "t5.pth"
    torch.save(tensors, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=str(path.name)):
        open_checkpoint(path)
