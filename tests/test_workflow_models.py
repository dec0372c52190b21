"""Every model file a shipped workflow names is a manifest entry of its variant's bundle, and the variant's
workflows together use every model file that bundle downloads (a sharded model counts as used when one of its
shards is named: its loader reads the index beside it; SkyReels V3 V2V ships one workflow per DiT of its bundle; a
folder entry is named by its folder)."""

import json
from pathlib import PurePosixPath

import pytest

from videosdgx.families import shipped_workflows
from videosdgx.manifest import load_manifest
from workflow_harness import WORKFLOWS, workflow_variant

NAMES = sorted(shipped_workflows())
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".gguf")


FOLDERS = {entry.filename for entry in load_manifest().entries.values() if entry.is_folder}


def model_files(name: str) -> list[str]:
    """Model file names and model folders (folder entries: files listed on the Hub at install time) it names."""
    graph = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    return [value for node in graph.values() for value in node["inputs"].values()
            if isinstance(value, str) and (value.endswith(MODEL_SUFFIXES) or value in FOLDERS)]


def test_every_shipped_workflow_exists_in_both_formats():
    assert len(NAMES) >= 7
    for name in NAMES:
        assert (WORKFLOWS / f"{name}.json").is_file() and (WORKFLOWS / "api" / f"{name}.json").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_workflow_model_files_are_in_its_bundle(name):
    manifest = load_manifest()
    bundle = manifest.bundle(workflow_variant(name).name)
    files = model_files(name)
    assert files, f"{name} names no model file"
    for file in files:
        entries = manifest.find_by_filename(file)
        assert entries, f"{name}: {file} is not in model_manifest.yaml"
        assert any(e.id in bundle.entries for e in entries), f"{name}: {file} is not in bundle {bundle.name}"
    together = [file for workflow in workflow_variant(name).workflows for file in model_files(workflow)]
    used_folders = {PurePosixPath(file).parent for file in together if PurePosixPath(file).parent.name}
    unused = {entry.filename for entry in manifest.bundle_entries(bundle.name)
              if (entry.filename.endswith(MODEL_SUFFIXES) or entry.is_folder) and entry.filename not in together
              and PurePosixPath(entry.filename).parent not in used_folders}
    assert not unused, f"bundle {bundle.name} downloads files no workflow of {name}'s variant uses: {unused}"
