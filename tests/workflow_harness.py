"""An in-process executor that behaves like ComfyUI's for the shipped workflows: the validation ComfyUI makes
before a run, then every ancestor of the output nodes in dependency order. Every family's workflows go through it.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO
from videosdgx.client.convert import is_link
from videosdgx.families import family, shipped_workflows

WORKFLOWS = REPO / "workflows"
CORE_OBJECT_INFO = json.loads((Path(__file__).parent / "core_object_info.json").read_text())


def api_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


def editor_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def workflow_variant(name: str):
    """The variant a shipped workflow runs (the one whose `workflows` lists it)."""
    row = shipped_workflows()[name]
    [variant] = [v for v in row.variant_table().values() if name in v.workflows]
    return variant


def prepare_comfy(comfy_pack, base: Path, names: list[str]):
    """The ComfyUI stand-in with tiny files of every bundle the workflows use (each variant's own bundle, through
    its family's demo writer), the example.png ComfyUI ships (and a video and a speech clip to load), and the core
    nodes the workflows connect to."""
    import core_nodes
    import torch
    from PIL import Image

    from videosdgx.media import write_audio, write_video

    for variant in {workflow_variant(name) for name in names}:
        family(variant.family).hook("demo")(variant.name, base / "models")
    (base / "input").mkdir()
    Image.new("RGB", (48, 40), (200, 120, 40)).save(base / "input" / "example.png")
    write_video(base / "input" / "example.mp4", torch.rand(40, 40, 48, 3, generator=torch.Generator().manual_seed(0)),
                24)
    write_audio(base / "input" / "example.wav", {"waveform": 0.1 * torch.randn(1, 1, 16000,
                                                 generator=torch.Generator().manual_seed(1)), "sample_rate": 16000})
    comfy_pack.folder_paths.set_base(base)
    comfy_pack.classes = {**comfy_pack.nodes, **{name: getattr(core_nodes, name) for name in CORE_OBJECT_INFO}}
    return comfy_pack


def object_info(classes: dict) -> dict:
    """/object_info as the server builds it (V3 schemas, V1 INPUT_TYPES for LoadImage)."""
    info = {}
    for name, cls in classes.items():
        if hasattr(cls, "define_schema"):
            info[name] = cls.GET_SCHEMA().get_v1_info(cls)
        else:
            inputs = cls.INPUT_TYPES()
            info[name] = {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()},
                          "output": list(cls.RETURN_TYPES), "output_node": False}
    return info


def validate(prompt: dict, info: dict) -> None:
    """The constant checks ComfyUI's validate_inputs makes: required inputs present, combo values listed, ranges."""
    for node_id, node in prompt.items():
        declared = info[node["class_type"]]["input"]
        for name, (kind, *rest) in declared["required"].items():
            assert name in node["inputs"], f"node {node_id}: missing required input {name}"
        for name, value in node["inputs"].items():
            kind, options = {**declared["required"], **declared.get("optional", {})}[name]
            if is_link(value):
                continue
            choices = kind if isinstance(kind, list) else options.get("options")
            if choices is not None:
                assert value in choices, f"node {node_id}: {name}={value!r} is not one of {choices}"
            if kind in ("INT", "FLOAT"):
                assert options["min"] <= value <= options["max"], f"node {node_id}: {name}={value} out of range"


def execute(prompt: dict, classes: dict) -> dict[str, dict]:
    """Run the ancestors of the output nodes in dependency order; the UI results of the output nodes by id."""
    info = object_info(classes)
    validate(prompt, info)
    results, ui, pending = {}, {}, [i for i, n in prompt.items() if info[n["class_type"]].get("output_node")]
    assert pending, "a prompt with no output node is rejected (prompt_no_outputs)"

    def run(node_id: str) -> None:
        if node_id in results:
            return
        node = prompt[node_id]
        for value in node["inputs"].values():
            if is_link(value):
                run(value[0])
        inputs = {k: results[v[0]][v[1]] if is_link(v) else v for k, v in node["inputs"].items()}
        cls = classes[node["class_type"]]
        if hasattr(cls, "define_schema"):
            output = cls.PREPARE_CLASS_CLONE({"UNIQUE_ID": node_id, "PROMPT": prompt}).execute(**inputs)
            results[node_id] = output.args
            if output.ui is not None:
                ui[node_id] = output.ui.as_dict()
        else:
            results[node_id] = getattr(cls(), cls.FUNCTION)(**inputs)

    for node_id in pending:
        run(node_id)
    return ui


