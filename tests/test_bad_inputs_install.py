"""`python install.py` against bad inputs and a misbehaving fake Hub: one table, one row per input, plus the
interrupted-download cases (Ctrl-C, full disk, kill -9), which must keep the staged bytes and continue from them."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
import huggingface_hub.file_download
import pytest
import yaml
from bad_inputs import attempt, warm_up
from fake_hub import FakeHub
from test_install import DIT, HUB_FILES, MANIFEST, VAE, load_install_script

from videosdgx.install import cli, download

REPO_ROOT = Path(__file__).resolve().parent.parent
DIT_KEY = "acme/tiny/split/dit.safetensors"

warm_up()


@dataclass
class Case:
    """One bad input: the command line (COMFY / MANIFEST / WORK stand for the test's folders), a setup step, and
    what the user must get."""

    args: tuple[str, ...]
    code: int
    words: tuple[str, ...] = ()
    setup: str = ""
    yaml_text: str | bytes | None = None  # written to WORK/extra.yaml


CASES = {
    "unknown-bundle": Case(("--models", "nope"), 1, ("No model bundle 'nope'", "--list")),
    "empty-bundle-name": Case(("--models", ""), 1, ("No model bundle ''",)),
    "not-released-bundle": Case(("--models", "ghost"), 1, ("never published",)),
    "dry-run-without-models": Case(("--dry-run",), 64, ("name the bundles to plan",)),
    "unknown-option": Case(("--frobnicate",), 64, ("unrecognized arguments",)),
    "models-without-names": Case(("--models",), 64, ("expected at least one argument",)),
    "comfyui-missing-folder": Case(("--models", "tiny", "--comfyui", "WORK/absent"), 1, ("is not a ComfyUI folder",)),
    "comfyui-is-a-file": Case(("--models", "tiny", "--comfyui", "WORK/afile"), 1, ("is not a ComfyUI folder",),
                              setup="afile"),
    "models-dir-is-a-file": Case(("--models", "tiny", "--models-dir", "WORK/afile"), 1,
                                 ("Cannot create the model folder",), setup="afile"),
    "models-dir-below-a-file": Case(("--models", "tiny", "--models-dir", "WORK/afile/models"), 1,
                                    ("Cannot create the model folder",), setup="afile"),
    "destination-is-a-folder": Case(("--models", "tiny-bad-free",), 1, ("Could not move",), setup="vae-dir"),
    "extra-config-missing": Case(("--list", "--extra-model-paths-config", "WORK/absent.yaml"), 0,
                                 ("absent.yaml does not exist", "--extra-model-paths-config")),
    "extra-config-missing-install": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/absent.yaml"), 1,
                                         ("absent.yaml does not exist",)),
    "extra-config-binary": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                ("not a text file",), yaml_text=b"\x89PNG\r\n\x1a\n\xff\xfe"),
    "extra-config-directory": Case(("--models", "tiny", "--extra-model-paths-config", "WORK"), 1, ("Cannot read",)),
    "extra-config-bad-yaml": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                  ("not valid YAML",), yaml_text="a: [1, 2\n"),
    "extra-config-a-list": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                ("must map section names",), yaml_text="- a\n- b\n"),
    "extra-base-path-list": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                 ("base_path of section 'store' is a list",),
                                 yaml_text="store:\n  base_path: [1, 2]\n  vae: v\n"),
    "extra-base-path-mapping": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                    ("base_path of section 'store' is a mapping",),
                                    yaml_text="store:\n  base_path: {a: 1}\n  vae: v\n"),
    "extra-base-path-unset-variable": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                           ("environment variable that is not set",),
                                           yaml_text="store:\n  base_path: $VIDEOSDGX_NOT_SET/models\n  vae: v\n"),
    "extra-folder-list": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                              ("'vae' of section 'store' is a list",), yaml_text="store:\n  vae: [a, b]\n"),
    "extra-folder-mapping": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                 ("'vae' of section 'store' is a mapping",), yaml_text="store:\n  vae: {a: b}\n"),
    "extra-section-string": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                 ("section 'store' is str",), yaml_text="store: /somewhere\n"),
    "extra-is-default-text": Case(("--models", "tiny", "--extra-model-paths-config", "WORK/extra.yaml"), 1,
                                  ("is_default of section 'store'",),
                                  yaml_text="store:\n  is_default: sometimes\n  vae: v\n"),
    "comfyui-own-extra-yaml-broken": Case(("--models", "tiny"), 1, ("base_path of section 'x' is a list",),
                                          setup="comfy-yaml"),
    "manifest-missing": Case(("--list", "--manifest", "WORK/absent.yaml"), 1, ("Model manifest not found",)),
    "manifest-binary": Case(("--list", "--manifest", "WORK/extra.yaml"), 1, ("not a text file",),
                            yaml_text=b"\xff\xfe\x00binary"),
    "manifest-a-list": Case(("--list", "--manifest", "WORK/extra.yaml"), 1, ("invalid",), yaml_text="[1, 2]\n"),
    "manifest-bad-yaml": Case(("--list", "--manifest", "WORK/extra.yaml"), 1, ("not valid YAML",),
                              yaml_text="entries: [\n"),
    "hub-unreachable": Case(("--models", "tiny"), 1, ("Could not download", "Check the network"),
                            setup="hub-unreachable"),
    "hub-endpoint-not-a-url": Case(("--models", "tiny"), 1, ("Could not download",), setup="hub-garbage"),
    "hub-file-missing": Case(("--models", "tiny"), 1, ("is not in acme/tiny@main", "out of date"),
                             setup="hub-404"),
    "hub-truncated-file": Case(("--models", "tiny"), 1, ("bytes but tiny-dit is", "The bad download was deleted"),
                               setup="hub-truncated"),
    "hub-gated-no-token": Case(("--models", "tiny-gated"), 1, ("gated repository", "HF_TOKEN"), setup="gated"),
    "wrong-sha256": Case(("--models", "tiny-bad"), 1, ("has sha256",)),
    "another-installer-running": Case(("--models", "tiny"), 1, ("Another installer is downloading tiny-dit",),
                                      setup="locked"),
    "verify-nothing-installed": Case(("--verify", "--models", "tiny"), 1, ("missing  tiny-dit", "4 problems")),
    "verify-unknown-bundle": Case(("--verify", "--models", "nope"), 1, ("No model bundle 'nope'",)),
    "installed-file-corrupt": Case(("--models", "tiny"), 0, ("It will be downloaded again", "Done: 4 files"),
                                   setup="corrupt-vae"),
    "staged-other-version": Case(("--models", "tiny"), 0, ("Dropping", "Done: 4 files"), setup="staged-other"),
    "staged-longer-than-file": Case(("--models", "tiny"), 0, ("Dropping", "Done: 4 files"), setup="staged-long"),
    "staged-garbage-bytes": Case(("--models", "tiny"), 1, ("not a safetensors file", "The bad download was deleted"),
                                 setup="staged-garbage"),
    "staged-source-record-garbage": Case(("--models", "tiny"), 0, ("Done: 4 files",), setup="staged-bad-record"),
}


def stage(comfy: Path, entry_id: str, part: bytes, record: object) -> Path:
    """Bytes staged for `entry_id` as an earlier, killed run would have left them."""
    staging = comfy / "models" / download.STAGING_NAME / entry_id
    staging.mkdir(parents=True, exist_ok=True)
    name = {"tiny-dit": "tiny_dit.safetensors", "tiny-vae": "tiny_vae.safetensors"}[entry_id]
    (staging / f"{name}.part").write_bytes(part)
    (staging / download.SOURCE_RECORD).write_text(record if isinstance(record, str) else json.dumps(record))
    return staging


def dit_record(etag: str | None = None) -> dict:
    return {"repo": "acme/tiny", "path": "split/dit.safetensors", "revision": "main",
            "etag": etag or hashlib.sha256(DIT).hexdigest(), "size": len(DIT)}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A ComfyUI folder, a manifest, a work folder, and the fake Hub (HF_ENDPOINT points at it)."""
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes" / "videosdgx").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (comfy / "folder_paths.py").write_text("")
    manifest = tmp_path / "manifest.yaml"
    data = json.loads(json.dumps(MANIFEST))
    data["entries"].append({**data["entries"][2], "id": "tiny-vae-free", "filename": "tiny_vae_free.safetensors"})
    data["bundles"].append({"name": "tiny-bad-free", "family": "wan", "description": "x", "status": "available",
                            "entries": ["tiny-vae-free"]})
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.chdir(work)
    with FakeHub(HUB_FILES) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield comfy, manifest, work, hub


def expand(args: tuple[str, ...], comfy: Path, manifest: Path, work: Path) -> list[str]:
    argv = [a.replace("WORK", str(work)) for a in args]
    if "--comfyui" not in argv and "--models-dir" not in argv:
        argv += ["--comfyui", str(comfy)]
    if "--manifest" not in argv:
        argv += ["--manifest", str(manifest)]
    return argv


@pytest.mark.parametrize("name", CASES)
def test_install_bad_input(name, world, tmp_path, caplog, capsys, monkeypatch):
    case = CASES[name]
    comfy, manifest, work, hub = world
    if case.yaml_text is not None:
        target = work / "extra.yaml"
        target.write_bytes(case.yaml_text if isinstance(case.yaml_text, bytes) else case.yaml_text.encode())
    setup = case.setup
    if setup == "afile":
        (work / "afile").write_text("x")
    elif setup == "vae-dir":
        (comfy / "models" / "vae" / "tiny_vae_free.safetensors").mkdir(parents=True)
    elif setup == "comfy-yaml":
        (comfy / "extra_model_paths.yaml").write_text("x:\n  base_path: [1, 2]\n  vae: v\n")
    elif setup == "hub-unreachable":
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
        monkeypatch.setattr(huggingface_hub.file_download.time, "sleep", lambda s: None)
    elif setup == "hub-garbage":
        monkeypatch.setenv("HF_ENDPOINT", "not a url")
    elif setup == "hub-404":
        del hub.files[DIT_KEY]
    elif setup == "hub-truncated":
        hub.truncate[DIT_KEY] = len(DIT) - 1000
    elif setup == "gated":
        hub.gated["acme/gated"] = "secret"
    elif setup == "corrupt-vae":
        (comfy / "models" / "vae").mkdir(parents=True)
        (comfy / "models" / "vae" / "tiny_vae.safetensors").write_bytes(VAE[:100])
    elif setup == "staged-other":
        stage(comfy, "tiny-dit", DIT[:5000], dit_record(etag='"an-older-version"'))
    elif setup == "staged-long":
        stage(comfy, "tiny-dit", DIT + b"extra", dit_record())
    elif setup == "staged-garbage":
        stage(comfy, "tiny-dit", b"\x00" * 5000, dit_record())
    elif setup == "staged-bad-record":
        stage(comfy, "tiny-dit", DIT[:5000], "[not, the, record")
    elif setup == "locked":
        import fcntl

        staging = comfy / "models" / download.STAGING_NAME / "tiny-dit"
        staging.mkdir(parents=True)
        holder = (staging / ".lock").open("a")
        fcntl.flock(holder, fcntl.LOCK_EX)
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                                 pass_fds=[holder.fileno()])  # another process holds the same lock
        holder.close()
    argv = expand(case.args, comfy, manifest, work)
    try:
        tried = attempt(lambda: cli.main(argv), tmp_path, caplog, capsys)
    finally:
        if setup == "locked":
            child.communicate(b"")
    tried.judge(case.code, case.words, allowed=(comfy / "models",))
    if name == "extra-base-path-list":
        assert not list(work.glob("*[[]*")), "UNSAFE: a folder named after the list was created"


def fake_http_get_failing_after(half: int, error: BaseException):
    """An `http_get` that writes `half` bytes of DIT, then fails as a full disk or a Ctrl-C would."""
    real = download.http_get

    def http_get(url, sink, *, resume_size=0, **kwargs):
        if "dit.safetensors" not in url:
            return real(url, sink, resume_size=resume_size, **kwargs)
        sink.write(DIT[resume_size:half])
        sink.flush()
        raise error

    return http_get


@pytest.mark.parametrize(("error", "code", "words"), [
    (OSError(errno.ENOSPC, "No space left on device"), 1, ("Disk full while downloading tiny-dit", "staged")),
    (KeyboardInterrupt(), 130, ("Interrupted while downloading tiny-dit", "continue from there")),
])
def test_interrupted_download_keeps_its_bytes_and_the_next_run_continues(world, tmp_path, caplog, capsys,
                                                                         monkeypatch, error, code, words):
    comfy, manifest, work, hub = world
    half = len(DIT) // 2
    failing = fake_http_get_failing_after(half, error)
    monkeypatch.setattr(download, "http_get", failing)
    monkeypatch.setattr(huggingface_hub.file_download, "http_get", failing)
    argv = expand(("--models", "tiny"), comfy, manifest, work)
    first = attempt(lambda: cli.main(argv), tmp_path, caplog, capsys)
    first.judge(code, words, allowed=(comfy / "models",))
    assert "check the network" not in first.text.lower()
    staged = comfy / "models" / download.STAGING_NAME / "tiny-dit" / "tiny_dit.safetensors.part"
    assert staged.read_bytes() == DIT[:half], "LOST: the staged bytes were deleted"
    monkeypatch.undo()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    hub.requests.clear()
    assert cli.main(argv) == 0
    dit_gets = [r for r in hub.requests if r.method == "GET" and r.key == DIT_KEY]
    assert [g.range for g in dit_gets] == [f"bytes={half}-"]
    assert hub.sent[DIT_KEY] == len(DIT) - half  # the first run's bytes were written by the stand-in http_get
    assert (comfy / "models" / "diffusion_models" / "tiny_dit.safetensors").read_bytes() == DIT
    assert not (comfy / "models" / download.STAGING_NAME).exists()


def test_download_killed_with_sigkill_resumes_from_its_staged_bytes(world):
    """A real installer process, killed -9 while the Hub stalls mid-file, leaves bytes the next run continues from."""
    comfy, manifest, work, hub = world
    half = len(DIT) // 2
    hub.stall_after[DIT_KEY] = half
    script = ("import sys, huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = 4096; "
              "from videosdgx.install.cli import main; sys.exit(main(sys.argv[1:]))")
    argv = expand(("--models", "tiny"), comfy, manifest, work)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": hub.url, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", script, *argv], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    staged = comfy / "models" / download.STAGING_NAME / "tiny-dit" / "tiny_dit.safetensors.part"
    deadline = time.monotonic() + 60
    while (not staged.exists() or staged.stat().st_size < half // 2) and time.monotonic() < deadline:
        time.sleep(0.05)  # the Hub has stalled after `half` bytes; some of them are still in write buffers
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = staged.stat().st_size
    assert half // 2 <= kept <= half
    del hub.stall_after[DIT_KEY]
    hub.requests.clear()
    sent = hub.sent[DIT_KEY]
    assert cli.main(argv) == 0
    dit_gets = [r for r in hub.requests if r.method == "GET" and r.key == DIT_KEY]
    assert [g.range for g in dit_gets] == [f"bytes={kept}-"]
    assert hub.sent[DIT_KEY] - sent == len(DIT) - kept  # only the missing bytes of the DiT crossed the wire again
    assert (comfy / "models" / "diffusion_models" / "tiny_dit.safetensors").read_bytes() == DIT


def test_list_warns_about_a_damaged_file_once(world, capsys, caplog):
    comfy, manifest, work, hub = world
    (comfy / "models" / "vae").mkdir(parents=True)
    (comfy / "models" / "vae" / "tiny_vae.safetensors").write_bytes(VAE[:100])  # in two bundles
    assert cli.main(expand(("--list",), comfy, manifest, work)) == 0
    warnings = [r.getMessage() for r in caplog.records if "tiny_vae.safetensors" in r.getMessage()]
    assert len(warnings) == 1 and "It will be downloaded again" in warnings[0]


def test_bare_install_does_not_call_absent_bundles_ready(world, monkeypatch, capsys):
    comfy, manifest, work, hub = world
    script = load_install_script()
    monkeypatch.setattr(script, "install_requirements", lambda requirements: True)
    monkeypatch.setenv("VIDEOSDGX_MANIFEST", str(manifest))
    monkeypatch.setenv("COMFYUI_PATH", str(comfy))
    assert script.main([]) == 0
    out = capsys.readouterr().out
    assert "Installed and ready to use: none yet." in out and "ready to use: tiny" not in out


def test_ctrl_c_in_the_bare_installer_ends_cleanly(monkeypatch, tmp_path, caplog, capsys):
    script = load_install_script()

    def interrupted(requirements):
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "install_requirements", interrupted)
    attempt(lambda: script.main([]), tmp_path, caplog, capsys).judge(130, ("Interrupted by the user",))
