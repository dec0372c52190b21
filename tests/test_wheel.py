"""A non-editable install works: the wheel carries the manifest and the workflows, and `videosdgx generate
--demo`, `--server` and the installer find them without the source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_comfy import FakeComfy, Scenario, Text, messages

from conftest import REPO

PID = "prompt-1"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel and installed (without dependencies: the test venv has them) into a folder."""
    build = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(build), str(REPO)],
                   check=True, capture_output=True)
    [wheel] = build.glob("videosdgx-*.whl")
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return target


def videosdgx(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "VIDEOSDGX_MODELS_DIR": str(cwd / "models")}
    return subprocess.run([sys.executable, "-m", "videosdgx.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_wheel_ships_the_manifest_and_workflows(installed):
    data = installed / "videosdgx" / "_shipped"
    assert (data / "model_manifest.yaml").read_bytes() == (REPO / "model_manifest.yaml").read_bytes()
    shipped = sorted(p.relative_to(data / "workflows") for p in (data / "workflows").rglob("*.json"))
    assert shipped == sorted(p.relative_to(REPO / "workflows") for p in (REPO / "workflows").rglob("*.json"))


def test_installed_demo_writes_an_mp4(installed, tmp_path):
    result = videosdgx(installed, tmp_path, "generate", "--demo", "--prompt", "a fox", "--width", "64", "--height",
                       "64", "--frames", "5", "--steps", "2", "--out", "demo.mp4")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo.mp4").stat().st_size > 0 and "wrote demo.mp4" in result.stdout


def test_installed_installer_lists_bundles_in_the_default_models_folder(installed, tmp_path):
    result = videosdgx(installed, tmp_path, "install", "--list")
    assert result.returncode == 0, result.stderr
    assert f"model folders under {tmp_path / 'models'}" in result.stdout and "wan2.1-t2v-1.3b" in result.stdout


def test_installed_server_mode_submits_the_shipped_workflow(installed, tmp_path):
    outputs = {"11": {"images": [{"filename": "w_00001_.mp4", "subfolder": "", "type": "output"}]}}
    steps = [Text(messages.execution_start(PID)), Text(messages.executed(PID, "11", outputs["11"])),
             Text(messages.execution_success(PID))]
    scenario = Scenario(steps=steps, outputs=outputs, files={("output", "", "w_00001_.mp4"): b"mp4"})
    with FakeComfy(scenario) as fake:
        result = videosdgx(installed, tmp_path, "generate", "--server", fake.url, "--prompt", "a kite", "--out", "out")
    assert result.returncode == 0, result.stderr
    assert fake.prompts[0]["prompt"]["4"]["inputs"]["prompt"] == "a kite"
    assert (tmp_path / "out" / "w_00001_.mp4").read_bytes() == b"mp4"
