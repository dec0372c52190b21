"""install.py and videosdgx.install against a local fake Hub: downloads, resume, verification, gating, disk, paths."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import struct
import subprocess
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from fake_hub import FakeHub

from videosdgx.install import cli, plan
from videosdgx.install.comfyui import find_comfyui, model_folders

REPO_ROOT = Path(__file__).resolve().parent.parent


def tiny_safetensors(floats: int, fill: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes([fill]) * (4 * floats)


DIT = tiny_safetensors(30000, 1)
TE = tiny_safetensors(20000, 2)
VAE = tiny_safetensors(5000, 3)
TOKENIZER = json.dumps({"model": {"type": "Unigram", "vocab": [["a", 0.0]] * 500}}).encode()
ENC = tiny_safetensors(1000, 4)
BAD = tiny_safetensors(1000, 5)
HUB_FILES = {
    "acme/tiny/split/dit.safetensors": DIT,
    "acme/tiny/split/te.safetensors": TE,
    "acme/tiny/split/vae.safetensors": VAE,
    "acme/tiny/tokenizer.json": TOKENIZER,
    "acme/tiny/bad.safetensors": BAD,
    "acme/gated/enc.safetensors": ENC,
}


def entry(id, repo, path, folder, filename, content, exact=True, sha=False, **extra):
    return {
        "id": id, "family": "wan", "role": "dit", "repo": repo, "path": path, "revision": "main",
        "size": len(content) if exact else round(len(content), -3), "size_verified": exact,
        "folder": folder, "filename": filename, "license": "apache-2.0", "gated": False,
        **({"sha256": hashlib.sha256(content).hexdigest()} if sha else {}), **extra,
    }  # fmt: skip


MANIFEST = {
    "version": 1,
    "entries": [
        entry("tiny-dit", "acme/tiny", "split/dit.safetensors", "diffusion_models", "tiny_dit.safetensors", DIT,
              sha=True),
        entry("tiny-te", "acme/tiny", "split/te.safetensors", "text_encoders", "tiny_te.safetensors", TE, exact=False),
        entry("tiny-vae", "acme/tiny", "split/vae.safetensors", "vae", "tiny_vae.safetensors", VAE),
        entry("tiny-tok", "acme/tiny", "tokenizer.json", "text_encoders", "tiny/tokenizer.json", TOKENIZER, sha=True),
        {**entry("tiny-bad", "acme/tiny", "bad.safetensors", "vae", "tiny_bad.safetensors", BAD),
         "sha256": hashlib.sha256(b"the file the manifest expects").hexdigest()},
        {**entry("gated-enc", "acme/gated", "enc.safetensors", "text_encoders", "enc.safetensors", ENC),
         "gated": True, "alternatives": ["tiny-te"]},
    ],
    "bundles": [
        {"name": "tiny", "family": "wan", "description": "tiny T2V", "status": "available",
         "entries": ["tiny-dit", "tiny-te", "tiny-vae", "tiny-tok"]},
        {"name": "tiny-gated", "family": "wan", "description": "gated encoder", "status": "planned",
         "entries": ["gated-enc", "tiny-vae"]},
        {"name": "tiny-bad", "family": "wan", "description": "wrong hash", "status": "available",
         "entries": ["tiny-bad"]},
        {"name": "ghost", "family": "waver", "description": "never released", "status": "not_released",
         "entries": [], "message": "Ghost weights were never published."},
    ],
}  # fmt: skip


@pytest.fixture
def comfy(tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes" / "videosdgx").mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "folder_paths.py").write_text("")
    return root


@pytest.fixture
def manifest_path(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(MANIFEST, sort_keys=False))
    return path


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    with FakeHub(HUB_FILES) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield server


def run(manifest_path: Path, comfy: Path, *args: str) -> int:
    return cli.main([*args, "--comfyui", str(comfy), "--manifest", str(manifest_path)])


def test_install_small_bundle(hub, comfy, manifest_path):
    assert run(manifest_path, comfy, "--models", "tiny") == 0
    models = comfy / "models"
    assert (models / "diffusion_models" / "tiny_dit.safetensors").read_bytes() == DIT
    assert (models / "text_encoders" / "tiny_te.safetensors").read_bytes() == TE
    assert (models / "vae" / "tiny_vae.safetensors").read_bytes() == VAE
    assert (models / "text_encoders" / "tiny" / "tokenizer.json").read_bytes() == TOKENIZER
    assert hub.count("GET") == 4 and hub.count("HEAD") == 4
    assert not (models / ".videosdgx-staging").exists()
    assert sorted(p.name for p in models.rglob("*") if p.is_file()) == [
        "tiny_dit.safetensors", "tiny_te.safetensors", "tiny_vae.safetensors", "tokenizer.json"]  # fmt: skip


def test_second_run_downloads_nothing(hub, comfy, manifest_path, capsys):
    assert run(manifest_path, comfy, "--models", "tiny") == 0
    first = len(hub.requests)
    assert run(manifest_path, comfy, "--models", "tiny") == 0
    assert len(hub.requests) == first == 8
    assert "Done: 4 files of tiny are installed." in capsys.readouterr().out


def test_resume_after_dropped_transfer(hub, comfy, manifest_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 4096)  # the real one is 10 MB
    key = "acme/tiny/split/dit.safetensors"
    hub.drop_once.add(key)
    assert run(manifest_path, comfy, "--models", "tiny") == 0
    gets = [r for r in hub.requests if r.method == "GET" and r.key == key]
    resumed_at = len(DIT) // 2 // 4096 * 4096  # the bytes received before the drop, in whole chunks
    assert [g.range for g in gets] == [None, f"bytes={resumed_at}-"]
    assert (comfy / "models" / "diffusion_models" / "tiny_dit.safetensors").read_bytes() == DIT


@pytest.mark.parametrize(
    "key, destination, expected",
    [
        ("acme/tiny/split/dit.safetensors", "diffusion_models/tiny_dit.safetensors", "bytes but tiny-dit is"),
        ("acme/tiny/split/te.safetensors", "text_encoders/tiny_te.safetensors", "is truncated: expected"),
    ],
)
def test_truncated_download_is_not_installed(hub, comfy, manifest_path, caplog, key, destination, expected):
    hub.truncate[key] = len(HUB_FILES[key]) - 1000
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, comfy, "--models", "tiny") == 1
    assert not (comfy / "models" / destination).exists()
    assert expected in caplog.text and "The bad download was deleted" in caplog.text
    assert "1 of 4 files were not installed" in caplog.text
    assert (comfy / "models" / "vae" / "tiny_vae.safetensors").read_bytes() == VAE
    assert not (comfy / "models" / ".videosdgx-staging").exists()


def test_wrong_hash_is_rejected_and_removed(hub, comfy, manifest_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, comfy, "--models", "tiny-bad") == 1
    expected = MANIFEST["entries"][4]["sha256"]
    assert f"has sha256 {hashlib.sha256(BAD).hexdigest()}, expected {expected}" in caplog.text
    assert "The bad download was deleted" in caplog.text
    assert hub.count("GET") == 1
    assert [p for p in comfy.rglob("*") if p.is_file() and p.suffix != ".py"] == []


def test_gated_repo_401_names_the_alternative(hub, comfy, manifest_path, caplog, monkeypatch):
    hub.gated["acme/gated"] = "secret"
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, comfy, "--models", "tiny-gated") == 1
    assert "Hugging Face refused acme/gated (HTTP 401). It is a gated repository" in caplog.text
    assert "Non-gated alternative with the same weights: tiny-te (acme/tiny/split/te.safetensors" in caplog.text
    assert not (comfy / "models" / "text_encoders" / "enc.safetensors").exists()
    assert (comfy / "models" / "vae" / "tiny_vae.safetensors").read_bytes() == VAE  # the other file still came
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert run(manifest_path, comfy, "--models", "tiny-gated") == 0
    assert (comfy / "models" / "text_encoders" / "enc.safetensors").read_bytes() == ENC


def test_not_enough_disk_refuses_before_downloading(hub, comfy, manifest_path, caplog, monkeypatch):
    monkeypatch.setattr(plan, "free_bytes", lambda path: 1000)
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, comfy, "--models", "tiny") == 1
    needed = len(DIT) + round(len(TE), -3) + len(VAE) + len(TOKENIZER)  # manifest sizes, all on one filesystem
    assert f"needs {plan.format_size(needed)}, only 1,000 bytes free" in caplog.text
    assert "Nothing was downloaded" in caplog.text and hub.requests == []


def test_extra_model_paths_yaml_destinations(hub, comfy, manifest_path, tmp_path, monkeypatch):
    monkeypatch.setenv("STORE_ROOT", str(tmp_path / "store"))
    (comfy / "extra_model_paths.yaml").write_text(
        "store:\n  base_path: $STORE_ROOT\n  unet: |\n    dm_first\n    dm_second\n  text_encoders: te\n"
        "fast:\n  base_path: ../fast\n  is_default: true\n  vae: |\n    vae_a\n    vae_b\n"
    )
    legacy = comfy / "models" / "unet"
    legacy.mkdir(parents=True)
    (legacy / "tiny_dit.safetensors").write_bytes(DIT)  # already installed in a folder ComfyUI searches
    assert run(manifest_path, comfy, "--models", "tiny") == 0
    assert (tmp_path / "store" / "te" / "tiny_te.safetensors").read_bytes() == TE
    assert (tmp_path / "store" / "te" / "tiny" / "tokenizer.json").read_bytes() == TOKENIZER
    assert (tmp_path / "fast" / "vae_b" / "tiny_vae.safetensors").read_bytes() == VAE  # ComfyUI puts vae_b first
    assert not (tmp_path / "store" / "dm_first" / "tiny_dit.safetensors").exists()
    assert {r.key for r in hub.requests} == {f"acme/tiny/{p}" for p in ("split/te.safetensors",
                                             "split/vae.safetensors", "tokenizer.json")}  # fmt: skip
    folders = model_folders(comfy)
    assert folders.target("diffusion_models") == tmp_path / "store" / "dm_first"
    assert folders.search_dirs("diffusion_models")[:3] == [
        tmp_path / "store" / "dm_first", comfy / "models" / "diffusion_models", comfy / "models" / "unet"]  # fmt: skip
    assert folders.target("loras") == comfy / "models" / "loras"


def test_list_output(hub, comfy, manifest_path, capsys):
    assert run(manifest_path, comfy, "--list") == 0
    before = capsys.readouterr().out
    assert run(manifest_path, comfy, "--models", "tiny") == 0
    capsys.readouterr()
    assert run(manifest_path, comfy, "--list") == 0
    after = capsys.readouterr().out
    size = plan.format_size(len(DIT) + round(len(TE), -3) + len(VAE) + len(TOKENIZER), exact=False)
    assert f"  {'tiny':<26} {'available':<22} {size:>14}  {'0/4':<10} tiny T2V" in before
    assert f"  {'tiny':<26} {'available':<22} {size:>14}  {'yes':<10} tiny T2V" in after
    assert f"  {'tiny-gated':<26} {'planned, gated':<22}" in after and "1/2" in after
    assert "ghost: Ghost weights were never published." in after
    assert f"model folders under {comfy / 'models'}" in after


def test_dry_run_shows_plan_and_downloads_nothing(hub, comfy, manifest_path, capsys):
    (comfy / "models" / "vae").mkdir(parents=True)
    (comfy / "models" / "vae" / "tiny_vae.safetensors").write_bytes(VAE)
    assert run(manifest_path, comfy, "--models", "tiny", "tiny-gated", "--dry-run") == 0
    out = capsys.readouterr().out
    dest = comfy / "models" / "diffusion_models" / "tiny_dit.safetensors"
    assert f"  download  {'tiny-dit':<36} {plan.format_size(len(DIT)):>12}  -> {dest}" in out
    assert f"  present   {'tiny-vae':<36}" in out and f"at {comfy / 'models' / 'vae' / 'tiny_vae.safetensors'}" in out
    assert "To download: 4 of 5 files" in out and "(enough)." in out
    assert "Gated repos (accept the licence on huggingface.co and set HF_TOKEN): acme/gated." in out
    assert hub.requests == []


def test_not_released_bundle_refuses(hub, comfy, manifest_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert run(manifest_path, comfy, "--models", "ghost") == 1
    assert "ghost: Ghost weights were never published." in caplog.text and hub.requests == []


def test_verify_reports_bad_files(hub, comfy, manifest_path, capsys):
    assert run(manifest_path, comfy, "--models", "tiny") == 0
    capsys.readouterr()
    assert run(manifest_path, comfy, "--verify", "--models", "tiny") == 0
    assert "4 files checked, 0 problems." in capsys.readouterr().out
    tokenizer = comfy / "models" / "text_encoders" / "tiny" / "tokenizer.json"
    tokenizer.write_bytes(TOKENIZER.replace(b"Unigram", b"Unigrom"))
    assert run(manifest_path, comfy, "--verify", "--models", "tiny") == 1
    out = capsys.readouterr().out
    assert "  BAD      tiny-tok" in out and "has sha256" in out and "4 files checked, 1 problem." in out


def test_find_comfyui(tmp_path, comfy):
    pack = comfy / "custom_nodes" / "videosdgx"
    assert find_comfyui(pack, {}, tmp_path / "home") == comfy.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert find_comfyui(elsewhere, {"COMFYUI_PATH": str(comfy)}, tmp_path / "home") == comfy.resolve()
    home = tmp_path / "home"
    (home / "ComfyUI").mkdir(parents=True)
    assert find_comfyui(elsewhere, {}, home) is None
    (home / "ComfyUI" / "main.py").write_text("")
    (home / "ComfyUI" / "folder_paths.py").write_text("")
    assert find_comfyui(elsewhere, {}, home) == (home / "ComfyUI").resolve()


def test_models_dir_without_comfyui(hub, tmp_path, manifest_path):
    models = tmp_path / "models"
    assert cli.main(["--models", "tiny", "--models-dir", str(models), "--manifest", str(manifest_path)]) == 0
    assert (models / "vae" / "tiny_vae.safetensors").read_bytes() == VAE


def load_install_script():
    spec = importlib.util.spec_from_file_location("install_script", REPO_ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_script_offline_exits_zero(tmp_path, monkeypatch, caplog, capsys):
    script = load_install_script()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("safetensors>=0.4.3\npyyaml>=6\n")
    monkeypatch.setattr(script, "REQUIREMENTS", requirements)
    calls = []

    def offline_pip(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for pyyaml>=6\n"
                                           "Failed to establish a new connection: [Errno -3]")  # fmt: skip

    monkeypatch.setattr(script.subprocess, "run", offline_pip)
    with caplog.at_level(logging.INFO):
        assert script.main([]) == 0
    assert calls == [[script.sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-r",
                      str(requirements)]]  # fmt: skip
    assert "pip could not reach the package index" in caplog.text
    assert "python install.py --models wan2.1-t2v-1.3b" in capsys.readouterr().out


def test_install_script_refuses_torch_and_reports_pip_failure(tmp_path, monkeypatch):
    script = load_install_script()
    assert script.forbidden_requirements("numpy>=1\ntorch>=2.4 ; sys_platform=='linux'\nTorchAudio\n# torch\n") == [
        "torch", "torchaudio"]  # fmt: skip
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("einops\ntorchvision==0.20\n")
    monkeypatch.setattr(script.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert script.install_requirements(requirements) is False
    requirements.write_text("einops\n")
    monkeypatch.setattr(script.subprocess, "run",
                        lambda command, **k: subprocess.CompletedProcess(command, 1, "", "ResolutionImpossible"))
    assert script.install_requirements(requirements) is False
