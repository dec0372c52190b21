"""The shipped bundles whose files are resolved at install time (SkyReels V3 V2V / A2V, MAGI-1 24B) or come from a
URL (MAGI-1's special_tokens.npz), installed from the local fake Hub serving tiny files in the published layouts
(the family's demo files), then run."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fake_hub import FakeHub

from videosdgx.bundle_files import find_bundle_files
from videosdgx.cli import main
from videosdgx.families import family
from videosdgx.install import cli
from videosdgx.install.comfyui import model_folders
from videosdgx.install.folders import RECORD_NAME
from videosdgx.manifest import DEFAULT_MANIFEST, MANIFEST_VARIABLE, load_manifest
from videosdgx.media.video import read_video, write_video
from videosdgx.runtime.checkpoint import open_checkpoint
from videosdgx.testing.magi1 import special_tokens_arrays

RELEASED_TOKENS_SIZE = 3_343_124  # magi1.md §2


def hub_files(bundle: str, demo: Path) -> dict[str, bytes]:
    """The bundle's demo files under their Hub keys (`owner/name/path`): a folder entry's files in its repo folder."""
    files = {}
    for entry in load_manifest().bundle_entries(bundle):
        local = demo / entry.folder / entry.filename
        if entry.download_url:
            continue
        if entry.is_folder:
            prefix = f"{entry.repo}/{entry.path}/" if entry.path else f"{entry.repo}/"
            files.update({prefix + f.name: f.read_bytes() for f in local.iterdir() if f.name != RECORD_NAME})
        else:
            files[f"{entry.repo}/{entry.path}"] = local.read_bytes()
    return files


@pytest.fixture
def tiny_sizes_manifest(tmp_path, monkeypatch) -> Path:
    """The shipped manifest without the sizes of the real files (the fake Hub serves tiny ones), but for the one
    file served at its real size, special_tokens.npz."""
    data = yaml.safe_load(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    for entry in data["entries"]:
        if entry["id"] != "magi1-special-tokens":
            entry.update(size=None, size_verified=False)
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv(MANIFEST_VARIABLE, str(path))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return path


def test_v2v_bundle_downloads_its_folders_and_generates(tmp_path, tiny_sizes_manifest, monkeypatch):
    """`generate --model skyreels-v3-v2v-14b --download`: the transformer/ (index + shards) and shot_transformer/
    (one file) folders are listed and fetched, then found by role and run."""
    family("skyreels_v3").hook("demo")("skyreels-v3-v2v-14b", tmp_path / "demo")
    served = hub_files("skyreels-v3-v2v-14b", tmp_path / "demo")
    assert "Skywork/SkyReels-V3-V2V-14B/transformer/diffusion_pytorch_model.safetensors.index.json" in served
    assert "Skywork/SkyReels-V3-V2V-14B/shot_transformer/diffusion_pytorch_model.safetensors" in served
    clip = write_video(tmp_path / "in.mp4", torch.rand(30, 48, 64, 3, generator=torch.Generator().manual_seed(0)), 24)
    with FakeHub(served) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code = main(["generate", "--model", "skyreels-v3-v2v-14b", "--download", "--models-dir", str(tmp_path / "m"),
                     "--video", str(clip), "--option", "mode=shot", "--option", "duration=2", "--prompt",
                     "[ZOOM_IN_CUT] a new angle", "--width", "64", "--height", "32", "--steps", "1",
                     "--out", str(tmp_path / "out.mp4")])
    assert code == 0 and read_video(tmp_path / "out.mp4").frames.shape == (2 * 24 + 1, 32, 64, 3)
    dit = tmp_path / "m" / "diffusion_models" / "skyreels_v3_v2v_14B"
    assert (dit / RECORD_NAME).is_file() and (dit / "config.json").is_file()
    files = find_bundle_files("skyreels-v3-v2v-14b", model_folders(models_dir=tmp_path / "m"))
    assert files.one("dit") == dit / "diffusion_pytorch_model.safetensors.index.json"
    assert cli.main(["--verify", "--models", "skyreels-v3-v2v-14b", "--models-dir", str(tmp_path / "m")]) == 0


def test_a2v_bundle_installs_from_the_repo_root_and_its_wav2vec2_folder(tmp_path, tiny_sizes_manifest, monkeypatch):
    family("skyreels_v3").hook("demo")("skyreels-v3-a2v-19b", tmp_path / "demo")
    served = hub_files("skyreels-v3-a2v-19b", tmp_path / "demo")
    served["Skywork/SkyReels-V3-A2V-19B/Wan2.1_VAE.pth"] = b"not taken: no pattern of the DiT entry matches it"
    with FakeHub(served) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert cli.main(["--models", "skyreels-v3-a2v-19b", "--models-dir", str(tmp_path / "m")]) == 0
        assert not any(r.key.endswith(".pth") for r in hub.requests)
    files = find_bundle_files("skyreels-v3-a2v-19b", model_folders(models_dir=tmp_path / "m"))
    assert files.one("dit").name == "diffusion_pytorch_model.safetensors.index.json"
    assert files.one("audio_encoder") == (tmp_path / "m" / "audio_encoders" / "skyreels_v3_chinese_wav2vec2_base" /
                                          "model.safetensors")
    assert cli.main(["--verify", "--models", "skyreels-v3-a2v-19b", "--models-dir", str(tmp_path / "m")]) == 0


def serve_magi(bundle: str, tmp_path: Path, manifest: Path, released_tokens: bool = True) -> FakeHub:
    """A fake Hub with the bundle's demo files and special_tokens.npz behind the manifest's download_url (pointed at
    the fake Hub): at the released width, so at its released size, or the demo's (for the tiny T5; unsized)."""
    family("magi1").hook("demo")(bundle, tmp_path / "demo")
    hub = FakeHub(hub_files(bundle, tmp_path / "demo"))
    tokens = io.BytesIO()
    np.savez(tokens, **special_tokens_arrays(dim=4096))
    entry = load_manifest().entry("magi1-special-tokens")
    raw = "/SandAI-org/MAGI-1/" + entry.download_url.split("/SandAI-org/MAGI-1/")[1]
    demo_tokens = tmp_path / "demo" / entry.folder / entry.filename
    hub.raw[raw] = tokens.getvalue() if released_tokens else demo_tokens.read_bytes()
    data = yaml.safe_load(manifest.read_text())
    raw_entry = next(e for e in data["entries"] if e["id"] == entry.id)
    raw_entry["download_url"] = hub.url + raw
    if not released_tokens:
        raw_entry.update(size=None, size_verified=False)
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return hub


def test_magi_special_tokens_come_from_their_url(tmp_path, tiny_sizes_manifest, monkeypatch):
    """`install.py --models magi-1-4.5b-distill` fetches special_tokens.npz from its pinned GitHub raw URL (here the
    fake Hub's), size-checked against the released file's 3,343,124 bytes."""
    entry = load_manifest().entry("magi1-special-tokens")
    assert entry.download_url.startswith(f"https://raw.githubusercontent.com/SandAI-org/MAGI-1/{entry.revision}/")
    assert (entry.size, entry.size_verified) == (RELEASED_TOKENS_SIZE, True)
    with serve_magi("magi-1-4.5b-distill", tmp_path, tiny_sizes_manifest) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert cli.main(["--models", "magi-1-4.5b-distill", "--models-dir", str(tmp_path / "m")]) == 0
        [tokens] = [r for r in hub.requests if r.method == "GET" and r.key.endswith(".npz")]
    installed = tmp_path / "m" / "text_encoders" / "magi1" / "special_tokens.npz"
    assert installed.stat().st_size == RELEASED_TOKENS_SIZE and tokens.authorization is None


@pytest.mark.parametrize("bundle", ["magi-1-24b-distill", "magi-1-24b-base", "magi-1-24b-distill-fp8"])
def test_magi_24b_bundles_install_with_their_dit_index(tmp_path, tiny_sizes_manifest, monkeypatch, capsys, bundle):
    with serve_magi(bundle, tmp_path, tiny_sizes_manifest) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert cli.main(["--models", bundle, "--models-dir", str(tmp_path / "m"), "--dry-run"]) == 0
        assert "known at install time" in capsys.readouterr().out
        assert cli.main(["--models", bundle, "--models-dir", str(tmp_path / "m")]) == 0
    [dit] = [e for e in load_manifest().bundle_entries(bundle) if e.role == "dit"]
    folder = tmp_path / "m" / "diffusion_models" / dit.filename
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [RECORD_NAME, "model.safetensors.index.json", "model-00001-of-00002.safetensors",
         "model-00002-of-00002.safetensors"])
    files = find_bundle_files(bundle, model_folders(models_dir=tmp_path / "m"))
    assert files.all("dit") == (folder / "model.safetensors.index.json",)


def test_magi_24b_fp8_runs_from_the_installed_files(tmp_path, tiny_sizes_manifest, monkeypatch):
    bundle = "magi-1-24b-distill-fp8"
    with serve_magi(bundle, tmp_path, tiny_sizes_manifest, released_tokens=False) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        out = tmp_path / "fp8.mp4"
        code = main(["generate", "--model", bundle, "--download", "--models-dir", str(tmp_path / "m"), "--prompt",
                     "a red fox", "--width", "64", "--height", "64", "--frames", "24", "--steps", "4", "--out",
                     str(out)])
    assert code == 0 and read_video(out).frames.shape[1:] == (64, 64, 3)
    folder = tmp_path / "m" / "diffusion_models" / "magi1_24B_distill_fp8"
    with open_checkpoint(folder / "model.safetensors.index.json") as checkpoint:
        assert any(checkpoint.info(k).dtype == torch.float8_e4m3fn for k in checkpoint.keys())
