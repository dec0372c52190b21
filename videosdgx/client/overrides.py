"""Workflow parameters: `--set NODE.input=value` and friendly names found through node titles.

Friendly names follow the title convention of the shipped workflows: `prompt` -> the node titled "Prompt",
`negative` -> "Negative Prompt" (or the `negative_prompt` input of the "Prompt" node), `image`/`end_image`/
`audio`/`video` -> "Input Image"/"Input End Image"/"Input Audio"/"Input Video" (the file is uploaded first),
`seed`, `steps`, `cfg`, `cfg_low`, `shift`, `solver`, `fps`, `weight_format`, `weight_dtype` -> every such input, `width`/`height`/`frames` -> the node titled
"Video Size", failing that every such input.
"""

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videosdgx.client.convert import is_link
from videosdgx.client.errors import UsageError

TITLED_INPUTS = {  # friendly name -> (node title, input names) candidates, the first that matches wins
    "prompt": (("Prompt", ("text", "prompt")),),
    "negative": (("Negative Prompt", ("text", "prompt")), ("Prompt", ("negative_prompt", "negative"))),
    "image": (("Input Image", ("image",)),),
    "end_image": (("Input End Image", ("image",)),),
    "audio": (("Input Audio", ("audio",)),),
    "video": (("Input Video", ("file", "video")),),
}
EVERY_INPUT = {  # friendly name -> input names; every node input of that name is set
    "seed": ("seed", "noise_seed"), "steps": ("steps",), "cfg": ("cfg",), "cfg_low": ("cfg_low_noise",),
    "shift": ("shift",), "solver": ("sampler",), "fps": ("fps",), "weight_format": ("weight_format",),
    "weight_dtype": ("weight_dtype",),
}
SIZE_INPUTS = {"width": ("width",), "height": ("height",), "frames": ("length", "num_frames", "frames")}
SIZE_TITLE = "Video Size"
UPLOADED = ("image", "end_image", "audio", "video")


@dataclass
class Overrides:
    """Parameters to change before submitting; None leaves the workflow's value."""

    sets: list[str] = field(default_factory=list)
    prompt: str | None = None
    negative: str | None = None
    seed: int | None = None
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    image: Path | None = None
    end_image: Path | None = None
    audio: Path | None = None
    video: Path | None = None
    cfg: float | None = None
    cfg_low: float | None = None
    shift: float | None = None
    solver: str | None = None
    fps: int | None = None
    weight_format: str | None = None
    weight_dtype: str | None = None


@dataclass(frozen=True)
class Upload:
    """A local file to upload; the server's name for it becomes the input value."""

    path: Path


@dataclass(frozen=True)
class Assignment:
    """Set `inputs[input]` of node `node_id` to `value`."""

    node_id: str
    input: str
    value: Any


def node_title(node: dict) -> str:
    """The title the editor shows (`_meta.title`), else the class type."""
    return (node.get("_meta") or {}).get("title") or node.get("class_type", "")


def parse_value(text: str) -> Any:
    """JSON when `text` parses as JSON, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def plan_overrides(workflow: dict, overrides: Overrides) -> list[Assignment]:
    """Resolve every override against an API-format workflow; friendly names first, then `--set` items."""
    plan: list[Assignment] = []
    for name, candidates in TITLED_INPUTS.items():
        value = getattr(overrides, name)
        if value is not None:
            value = Upload(Path(value)) if name in UPLOADED else value
            for title, inputs in candidates:
                if found := _titled(workflow, name, title, inputs, value, required=False):
                    break
            else:
                title, inputs = candidates[0]
                found = _titled(workflow, name, title, inputs, value)  # raises the "matches nothing" error
            plan += found
    for name, inputs in EVERY_INPUT.items():
        if (value := getattr(overrides, name)) is not None:
            plan += _every(workflow, name, inputs, value)
    for name, inputs in SIZE_INPUTS.items():
        if (value := getattr(overrides, name)) is not None:
            sized = _titled(workflow, name, SIZE_TITLE, inputs, value, required=False)
            plan += sized or _every(workflow, name, inputs, value)
    for item in overrides.sets:
        plan.append(_parse_set(workflow, item))
    return plan


def apply_assignments(workflow: dict, plan: list[Assignment]) -> dict:
    """A copy of `workflow` with every assignment applied (uploads must already be resolved to names)."""
    updated = copy.deepcopy(workflow)
    for assignment in plan:
        updated[assignment.node_id]["inputs"][assignment.input] = assignment.value
    return updated


def _titled(workflow: dict, name: str, title: str, inputs: tuple[str, ...], value: Any,
            required: bool = True) -> list[Assignment]:
    plan = []
    for node_id, node in workflow.items():
        if node_title(node).strip().casefold() != title.casefold():
            continue
        present = [key for key in inputs if key in node.get("inputs", {})]
        if present:
            plan.append(Assignment(node_id, present[0], value))
    if not plan and required:
        raise UsageError(f"--{name} matches nothing: no node titled {title!r} with an input "
                         f"{' or '.join(inputs)}. {_titles_hint(workflow)}")
    return plan


def _every(workflow: dict, name: str, inputs: tuple[str, ...], value: Any) -> list[Assignment]:
    plan = [
        Assignment(node_id, key, value)
        for node_id, node in workflow.items()
        for key, current in node.get("inputs", {}).items()
        if key in inputs and not is_link(current)
    ]
    if not plan:
        raise UsageError(f"--{name} matches nothing: no node has an input named {' or '.join(inputs)}. "
                         f"{_titles_hint(workflow)}")
    return plan


def _parse_set(workflow: dict, item: str) -> Assignment:
    target, equals, text = item.partition("=")
    reference, dot, input_name = target.rpartition(".")
    if not equals or not dot or not reference or not input_name:
        raise UsageError(f"--set expects NODE.input=value (NODE is a node id or title), got {item!r}")
    node_id = _find_node(workflow, reference.strip())
    inputs = workflow[node_id].get("inputs", {})
    if input_name not in inputs:
        raise UsageError(f"--set {item!r}: node {node_id} ({node_title(workflow[node_id])}) has no input "
                         f"{input_name!r}; its inputs are: {', '.join(inputs) or 'none'}")
    return Assignment(node_id, input_name, parse_value(text))


def _find_node(workflow: dict, reference: str) -> str:
    if reference in workflow:
        return reference
    matches = [node_id for node_id, node in workflow.items()
               if node_title(node).strip().casefold() == reference.casefold()]
    if not matches:
        raise UsageError(f"--set: no node has id or title {reference!r}. {_titles_hint(workflow)}")
    if len(matches) > 1:
        raise UsageError(f"--set: the title {reference!r} is used by nodes {', '.join(matches)}; use a node id")
    return matches[0]


def _titles_hint(workflow: dict) -> str:
    titles = ", ".join(f"{node_id}: {node_title(node)!r}" for node_id, node in workflow.items())
    return f"Nodes in this workflow: {titles}"
