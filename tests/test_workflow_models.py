"""Every model file a shipped workflow names is a manifest entry of that workflow's bundle."""

import json
from pathlib import Path

import pytest

from videosdgx.manifest import load_manifest

WORKFLOWS = sorted((Path(__file__).parent.parent / "workflows" / "api").glob("*.json"))
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".gguf")


def bundle_of(workflow: Path) -> str:
    name = workflow.stem
    two_tasks = name.startswith("wan2.2-ti2v-5b-") or (name.startswith("ltx-") and name.endswith("-i2v"))
    return name.rsplit("-", 1)[0] if two_tasks else name


def model_files(workflow: Path) -> list[str]:
    graph = json.loads(workflow.read_text())
    return [value for node in graph.values() for value in node["inputs"].values()
            if isinstance(value, str) and value.endswith(MODEL_SUFFIXES)]


def test_there_are_workflows():
    assert len(WORKFLOWS) >= 7


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_model_files_are_in_its_bundle(workflow):
    manifest = load_manifest()
    bundle = manifest.bundle(bundle_of(workflow))
    files = model_files(workflow)
    assert files, f"{workflow.name} names no model file"
    for name in files:
        entries = manifest.find_by_filename(name)
        assert entries, f"{workflow.name}: {name} is not in model_manifest.yaml"
        assert any(e.id in bundle.entries for e in entries), f"{workflow.name}: {name} is not in bundle {bundle.name}"
    bundle_files = {manifest.entry(i).filename for i in bundle.entries}
    assert bundle_files <= set(files) | {f for f in bundle_files if not f.endswith(MODEL_SUFFIXES)}, (
        f"bundle {bundle.name} downloads files {workflow.name} does not use: {bundle_files - set(files)}"
    )
