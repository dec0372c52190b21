"""Folder entries (files listed on the Hub at install time) and URL entries (files outside the Hub), against the
local fake Hub: listing with pagination, shard indexes, verification, the install record, role lookup offline, and
every error a user can meet."""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from fake_hub import FakeHub

from videosdgx.bundle_files import find_bundle_files
from videosdgx.install import cli
from videosdgx.install.comfyui import model_folders
from videosdgx.install.folders import RECORD_NAME
from videosdgx.manifest import load_manifest


def tensor_file(floats: int, fill: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes([fill]) * (4 * floats)


SHARDS = {f"diffusion_pytorch_model-0000{i}-of-00003.safetensors": tensor_file(3000 + i, i) for i in (1, 2, 3)}
INDEX = json.dumps({"metadata": {}, "weight_map": {f"t{i}": name for i, name in enumerate(SHARDS)}}).encode()
CONFIG = b'{"dim": 64}'
SINGLE = tensor_file(2000, 9)
TOKENS = bytes(range(256)) * 40
TOKENS_PATH = "/acme/code/0123abc/assets/tokens.npz"
HUB_FILES = {
    "acme/big/transformer/config.json": CONFIG,
    "acme/big/transformer/diffusion_pytorch_model.safetensors.index.json": INDEX,
    **{f"acme/big/transformer/{name}": data for name, data in SHARDS.items()},
    "acme/big/transformer/README.md": b"not needed",
    "acme/big/shot/config.json": CONFIG,
    "acme/big/shot/diffusion_pytorch_model.safetensors": SINGLE,
    "acme/big/shot/sub/other.safetensors": SINGLE,
    "acme/big/only_sub/deeper/x.safetensors": SINGLE,
    "acme/big/unindexed/a.safetensors": SINGLE,
    "acme/big/unindexed/b.safetensors": tensor_file(100, 7),
}


def folder_entry(id, path, filename, weights=("*.safetensors.index.json", "*.safetensors"), files=("config.json",)):
    return {"id": id, "family": "skyreels_v3", "role": "dit", "repo": "acme/big", "path": path, "revision": "main",
            "weights": list(weights), "files": list(files), "size": 30000, "size_verified": False,
            "folder": "diffusion_models", "filename": filename, "license": "apache-2.0", "gated": False}


MANIFEST = {
    "version": 1,
    "entries": [
        folder_entry("big-dit", "transformer", "big_dit"),
        {**folder_entry("big-shot", "shot", "big_shot"), "role": "dit_shot"},
        {"id": "code-tokens", "family": "magi1", "role": "special_tokens", "repo": "acme/code", "revision": "0123abc",
         "path": "assets/tokens.npz", "download_url": "URL", "size": len(TOKENS), "size_verified": True,
         "folder": "text_encoders", "filename": "code/tokens.npz", "license": "apache-2.0", "gated": False},
        folder_entry("absent", "nowhere", "absent"),
        folder_entry("no-files", "only_sub", "no_files"),
        folder_entry("no-match", "shot", "no_match", weights=("*.gguf",)),
        folder_entry("no-config", "transformer", "no_config", files=("model_index.json",)),
        folder_entry("unindexed", "unindexed", "unindexed", files=()),
    ],
    "bundles": [
        {"name": "big", "family": "skyreels_v3", "variant": "skyreels-v3-v2v-14b", "description": "two folders",
         "status": "available", "entries": ["big-dit", "big-shot"]},
        {"name": "tokens", "family": "magi1", "description": "a GitHub file", "status": "available",
         "entries": ["code-tokens"]},
        *({"name": n, "family": "skyreels_v3", "description": n, "status": "available", "entries": [n]}
          for n in ("absent", "no-files", "no-match", "no-config", "unindexed")),
    ],
}  # fmt: skip


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    with FakeHub(HUB_FILES) as server:
        server.raw[TOKENS_PATH] = TOKENS
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hub-secret")
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield server


@pytest.fixture
def manifest_path(tmp_path: Path, hub) -> Path:
    data = json.loads(json.dumps(MANIFEST))
    data["entries"][2]["download_url"] = hub.url + TOKENS_PATH
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(manifest_path: Path, models: Path, *args: str) -> int:
    return cli.main([*args, "--models-dir", str(models), "--manifest", str(manifest_path)])


def test_sharded_and_single_file_folders_install_and_are_found_offline(hub, tmp_path, manifest_path, capsys):
    hub.page_size = 2  # the 6 items of transformer/ come in 3 pages, the 3 of shot/ (one a folder) in 2
    models = tmp_path / "models"
    assert run(manifest_path, models, "--models", "big") == 0
    dit, shot = models / "diffusion_models" / "big_dit", models / "diffusion_models" / "big_shot"
    assert sorted(p.name for p in dit.iterdir()) == sorted([RECORD_NAME, "config.json", *SHARDS,
                                                            "diffusion_pytorch_model.safetensors.index.json"])
    assert sorted(p.name for p in shot.iterdir()) == [RECORD_NAME, "config.json", "diffusion_pytorch_model.safetensors"]
    assert all((dit / name).read_bytes() == data for name, data in SHARDS.items())
    record = json.loads((dit / RECORD_NAME).read_text())
    sizes = {f["name"]: (f["size"], f["sha256"]) for f in record["files"]}
    assert sizes[next(iter(SHARDS))] == (len(SHARDS[next(iter(SHARDS))]),
                                         hashlib.sha256(SHARDS[next(iter(SHARDS))]).hexdigest())
    assert sizes["config.json"] == (len(CONFIG), None)  # not an LFS file: the listing has no sha256
    trees = [r for r in hub.requests if r.key.startswith("/api/")]
    assert len(trees) == 3 + 2 and not any("README" in r.key for r in hub.requests)
    assert {r.authorization for r in hub.requests} == {"Bearer hub-secret"}
    capsys.readouterr()

    hub.stop()  # everything below works without the network
    files = find_bundle_files("big", model_folders(models_dir=models), load_manifest(manifest_path))
    assert files.one("dit") == dit / "diffusion_pytorch_model.safetensors.index.json"
    assert files.one("dit_shot") == shot / "diffusion_pytorch_model.safetensors"
    assert run(manifest_path, models, "--models", "big") == 0  # nothing to do: no request at all
    assert run(manifest_path, models, "--verify", "--models", "big") == 0
    assert "2 files checked, 0 problems." in capsys.readouterr().out
    assert run(manifest_path, models, "--list") == 0
    assert f"  {'big':<26} {'available':<22} {'~60,000 bytes*':>14}  {'yes':<10}" in capsys.readouterr().out
    (shot / "diffusion_pytorch_model.safetensors").write_bytes(SINGLE[:-1] + b"\x01")
    assert run(manifest_path, models, "--verify", "--models", "big") == 1
    out = capsys.readouterr().out
    assert "  BAD      big-shot" in out and "has sha256" in out


def test_several_weight_files_without_an_index_are_loaded_as_their_folder(hub, tmp_path, manifest_path):
    models = tmp_path / "models"
    assert run(manifest_path, models, "--models", "unindexed") == 0
    files = find_bundle_files("unindexed", model_folders(models_dir=models), load_manifest(manifest_path))
    assert files.one("dit") == models / "diffusion_models" / "unindexed"


def test_dry_run_says_folder_sizes_are_known_at_install_time(hub, tmp_path, manifest_path, capsys):
    assert run(manifest_path, tmp_path / "models", "--models", "big", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"  download  {'big-dit':<36} known at install time (estimate ~30,000 bytes)  -> " in out
    assert "(2 repo folders whose exact size is known at install time, counted at the estimate)" in out
    assert hub.requests == []


def test_folder_download_resumes_and_a_wrong_listing_hash_is_refused(hub, tmp_path, manifest_path, caplog,
                                                                      monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    key = "acme/big/transformer/" + list(SHARDS)[1]
    hub.drop_once.add(key)
    hub.listed["acme/big/shot/diffusion_pytorch_model.safetensors"] = {
        "lfs": {"oid": "0" * 64, "size": len(SINGLE), "pointerSize": 134}}
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", "big") == 1
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.key == key]
    assert ranges == [None, f"bytes={len(SHARDS[key.rsplit('/')[-1]]) // 2 // 1024 * 1024}-"]
    assert f"expected {'0' * 64} for big-shot:diffusion_pytorch_model.safetensors" in caplog.text
    assert "The bad download was deleted" in caplog.text and "1 of 2 files were not installed" in caplog.text
    shot = tmp_path / "models" / "diffusion_models" / "big_shot"
    assert not (shot / RECORD_NAME).exists() and not (shot / "diffusion_pytorch_model.safetensors").exists()
    assert (tmp_path / "models" / "diffusion_models" / "big_dit" / RECORD_NAME).is_file()


@pytest.mark.parametrize("bundle, message", [
    ("absent", "the folder 'nowhere' of acme/big@main does not exist, so manifest entry absent cannot be installed"),
    ("no-files", "the folder 'only_sub' of acme/big@main holds no files"),
    ("no-match", "No file in the folder 'shot' of acme/big@main matches any of '*.gguf' (it holds config.json, "
                 "diffusion_pytorch_model.safetensors)"),
    ("no-config", "matches 'model_index.json'"),
])
def test_folder_errors_name_the_entry(hub, tmp_path, manifest_path, caplog, bundle, message):
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", bundle) == 1
    assert message in caplog.text and "Please report it" in caplog.text
    assert not (tmp_path / "models" / "diffusion_models").exists() or not any(
        (tmp_path / "models" / "diffusion_models").rglob("*.safetensors"))


def test_a_shard_missing_from_the_listing_stops_after_the_index(hub, tmp_path, manifest_path, caplog):
    absent = list(SHARDS)[2]
    del hub.files[f"acme/big/transformer/{absent}"]
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", "big") == 1
    assert (f"diffusion_pytorch_model.safetensors.index.json of the folder 'transformer' of acme/big@main names "
            f"shard(s) that are not in that folder: {absent}. The upload on the Hub is incomplete, so big-dit cannot "
            "be installed; nothing but the index was downloaded.") in caplog.text
    fetched = {r.key.rsplit("/", 1)[-1] for r in hub.requests if r.method == "GET" and "/transformer/" in r.key}
    assert fetched == {"diffusion_pytorch_model.safetensors.index.json"}


def test_gated_folder_listing_says_what_to_do(hub, tmp_path, manifest_path, caplog):
    hub.gated["acme/big"] = "another-token"
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", "big") == 1
    assert "Hugging Face refused acme/big (HTTP 401)" in caplog.text


def test_url_entry_downloads_without_the_hub_token_and_resumes(hub, tmp_path, manifest_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.drop_once.add(TOKENS_PATH)
    assert run(manifest_path, tmp_path / "models", "--models", "tokens") == 0
    assert (tmp_path / "models" / "text_encoders" / "code" / "tokens.npz").read_bytes() == TOKENS
    gets = [r.range for r in hub.requests if r.method == "GET"]
    assert gets == [None, f"bytes={len(TOKENS) // 2 // 1024 * 1024}-"]
    assert [r.authorization for r in hub.requests] == [None] * 3  # HEAD, GET, GET: never the Hub token


def test_url_entry_of_the_wrong_size_is_refused(hub, tmp_path, manifest_path, caplog):
    hub.raw[TOKENS_PATH] = TOKENS + b"more"
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", "tokens") == 1
    assert f"is {len(TOKENS) + 4:,} bytes but code-tokens is {len(TOKENS):,} bytes" in caplog.text
    assert not (tmp_path / "models" / "text_encoders" / "code" / "tokens.npz").exists()
    del hub.raw[TOKENS_PATH]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", "tokens") == 1
    assert f"{hub.url}{TOKENS_PATH} answered HTTP 404 for code-tokens" in caplog.text


def test_a_folder_that_does_not_fit_is_refused_with_its_listed_size(hub, tmp_path, manifest_path, caplog,
                                                                     monkeypatch):
    from videosdgx.install import hub_folder

    monkeypatch.setattr(hub_folder, "free_bytes", lambda path: 1000)
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", "big") == 1
    listed = sum(map(len, SHARDS.values())) + len(CONFIG)  # the index is in place already
    assert (f"Not enough disk space for big-dit: its 4 files still to download are {listed:,} bytes as listed on the "
            "Hub, only 1,000 bytes free") in caplog.text
    assert not any(r.method == "GET" and "shard" in r.key for r in hub.requests)


def test_an_index_without_weight_map_is_refused(hub, tmp_path, manifest_path, caplog):
    hub.files["acme/big/transformer/diffusion_pytorch_model.safetensors.index.json"] = b'{"metadata": {}}'
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, tmp_path / "models", "--models", "big") == 1
    assert ("diffusion_pytorch_model.safetensors.index.json of the folder 'transformer' of acme/big@main is not a "
            "shard index (no \"weight_map\"): manifest entry big-dit cannot be installed") in caplog.text


def test_a_damaged_install_record_is_reported_and_the_folder_installed_again(hub, tmp_path, manifest_path, capsys,
                                                                              caplog):
    models = tmp_path / "models"
    assert run(manifest_path, models, "--models", "big") == 0
    record = models / "diffusion_models" / "big_shot" / RECORD_NAME
    record.write_text("{not json")
    capsys.readouterr()
    assert run(manifest_path, models, "--verify", "--models", "big") == 1
    assert "holds no record of the files of big-shot (.videosdgx-files.json): install.py did not finish" in (
        capsys.readouterr().out)
    with caplog.at_level(logging.WARNING):
        assert run(manifest_path, models, "--models", "big") == 0
    assert "It will be downloaded again." in caplog.text and json.loads(record.read_text())["entry"] == "big-shot"


def test_a_missing_model_folder_names_the_bundle_that_installs_it():
    """What a loader node says for a folder name (or a file inside it) that is not installed."""
    manifest = load_manifest()
    hint = ("models/diffusion_models/skyreels_v3_v2v_14B/ comes with bundle skyreels-v3-v2v-14b: "
            "`python install.py --models skyreels-v3-v2v-14b`.")
    assert manifest.install_hint("skyreels_v3_v2v_14B") == hint
    assert manifest.install_hint("skyreels_v3_v2v_14B/diffusion_pytorch_model-00001-of-00006.safetensors") == hint
    assert manifest.entry("skyreels-v3-v2v-14b-transformer").url == (
        "https://huggingface.co/Skywork/SkyReels-V3-V2V-14B/tree/main/transformer")
