"""Editor-format (UI, versions 0.4 and 1.0) to API-format conversion with /object_info (spec §6.3)."""

from dataclasses import dataclass
from typing import Any

from videosdgx.client.errors import PromptValidationError, UsageError

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
LEGACY_CONTROL_NAMES = ("seed", "noise_seed")
DROPPED_TYPES = {"Note", "MarkdownNote"}
REROUTE, PRIMITIVE = "Reroute", "PrimitiveNode"
MUTED, BYPASSED = 2, 4


@dataclass(frozen=True)
class Link:
    """One editor link, whatever its on-disk form."""

    origin_id: int
    origin_slot: int
    target_id: int
    target_slot: int
    type: str


def is_api_format(workflow: Any) -> bool:
    """True for `{node_id: {"class_type": ..., "inputs": ...}}`."""
    return (isinstance(workflow, dict) and bool(workflow) and "nodes" not in workflow
            and all(isinstance(node, dict) and "class_type" in node for node in workflow.values()))


def is_link(value: Any) -> bool:
    """True for an API-format link `[source_node_id, output_index]`."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def is_editor_format(workflow: Any) -> bool:
    """True for a graph saved by the editor (`nodes` and `links` lists)."""
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list)


def to_api(workflow: dict, object_info: dict | None) -> dict:
    """The API-format prompt for `workflow`; an API-format workflow passes through unchanged."""
    if is_api_format(workflow):
        for node_id, node in workflow.items():
            if not isinstance(node["class_type"], str) or not isinstance(node.get("inputs", {}), dict):
                raise UsageError(f"Node {node_id} of the API-format workflow needs a string class_type and an "
                                 f"inputs object, got {node!r:.120}. Re-export the workflow from ComfyUI.")
        return workflow
    if not is_editor_format(workflow):
        raise UsageError("The workflow is neither API format ({node_id: {class_type, inputs}}) "
                         "nor editor format (a graph with `nodes` and `links`)")
    if object_info is None:
        raise UsageError("Converting an editor-format workflow needs /object_info: reach the server or pass a file")
    if not isinstance(object_info, dict):
        raise UsageError("The /object_info data is not a JSON object of node types; pass the file the server's "
                         "GET /object_info returns.")
    try:
        return _EditorGraph(workflow, object_info).to_api()
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise UsageError(f"The editor-format workflow (or the node definitions of /object_info) has an entry of "
                         f"an unexpected shape ({type(exc).__name__}: {exc}). Open it in ComfyUI and save it again, "
                         "or export it with 'Export (API)'.") from None


def widget_inputs(node_info: dict) -> list[tuple[str, bool]]:
    """Widget input names in `widgets_values` order, each with whether a control value follows it."""
    declared = node_info.get("input", {})
    specs = {**declared.get("required", {}), **declared.get("optional", {})}
    order = node_info.get("input_order")
    names = [*order.get("required", []), *order.get("optional", [])] if order else list(specs)
    widgets = []
    for name in names:
        spec = specs.get(name)
        if not spec:
            continue
        kind = spec[0]
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if options.get("forceInput") or not (isinstance(kind, list) or kind in WIDGET_TYPES):
            continue
        control = kind == "INT" and options.get("control_after_generate", name in LEGACY_CONTROL_NAMES)
        widgets.append((name, bool(control)))
    return widgets


def read_links(workflow: dict) -> dict[int, Link]:
    """Links by id: 0.4 arrays `[id, origin, slot, target, slot, type]` or 1.0 objects."""
    links = {}
    for entry in workflow.get("links") or []:
        if isinstance(entry, dict):
            links[entry["id"]] = Link(entry["origin_id"], entry["origin_slot"], entry["target_id"],
                                      entry["target_slot"], entry.get("type", "*"))
        else:
            links[entry[0]] = Link(*entry[1:5], entry[5] if len(entry) > 5 else "*")
    return links


class _EditorGraph:
    def __init__(self, workflow: dict, object_info: dict):
        self.nodes = {node["id"]: node for node in workflow["nodes"]}
        self.links = read_links(workflow)
        self.object_info = object_info

    def to_api(self) -> dict:
        executable = [node for node in self.nodes.values()
                      if node["type"] not in DROPPED_TYPES | {REROUTE, PRIMITIVE}
                      and node.get("mode", 0) not in (MUTED, BYPASSED)]
        unknown = sorted({node["type"] for node in executable if node["type"] not in self.object_info})
        if unknown:
            raise PromptValidationError(
                f"The server does not know the node types {', '.join(unknown)}: install the custom nodes "
                "that provide them, or pass the matching --object-info")
        prompt = {str(node["id"]): self._convert(node) for node in executable}
        for entry in prompt.values():
            entry["inputs"] = {name: value for name, value in entry["inputs"].items()
                               if not (is_link(value) and value[0] not in prompt)}
        return prompt

    def _convert(self, node: dict) -> dict:
        info = self.object_info[node["type"]]
        inputs = self._widget_values(node, info)
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            source = self._resolve(slot["link"], slot.get("type"))
            if source is not None:
                inputs[slot["name"]] = source[1]
        title = node.get("title") or info.get("display_name") or node["type"]
        return {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}

    def _widget_values(self, node: dict, info: dict) -> dict:
        values = node.get("widgets_values")
        widgets = widget_inputs(info)
        if isinstance(values, dict):
            return {name: values[name] for name, _ in widgets if name in values}
        inputs, position = {}, 0
        for name, control in widgets:
            if position >= len(values or []):
                break
            inputs[name] = values[position]
            position += 2 if control else 1
        return inputs

    def _resolve(self, link_id: int, wanted_type: str | None) -> tuple[str, Any] | None:
        """("link", [id, slot]) or ("value", literal) feeding a link, through reroutes, primitives and bypasses."""
        seen = set()
        while link_id is not None and link_id not in seen:
            seen.add(link_id)
            link = self.links.get(link_id)
            origin = self.nodes.get(link.origin_id) if link else None
            if origin is None:
                return None
            if origin["type"] == REROUTE:
                link_id = (origin.get("inputs") or [{}])[0].get("link")
            elif origin["type"] == PRIMITIVE:
                values = origin.get("widgets_values") or []
                return ("value", values[0]) if values else None
            elif origin.get("mode", 0) == BYPASSED:
                link_id = self._bypass_input(origin, link.origin_slot, wanted_type or link.type)
            else:
                return "link", [str(link.origin_id), link.origin_slot]
        return None

    @staticmethod
    def _bypass_input(node: dict, slot: int, wanted_type: str) -> int | None:
        """The link on the bypassed node's input of the wanted type: same slot index first, then in order."""
        inputs = node.get("inputs") or []
        for index in [slot, *range(len(inputs))]:
            if index < len(inputs) and inputs[index].get("type") == wanted_type:
                return inputs[index].get("link")
        return None
