"""Readable messages for a rejected prompt (HTTP 400) and for a failed or interrupted execution.

The server's JSON is not trusted to have the documented shape: fields of another type are shown as text.
"""

from typing import Any

from videosdgx.client.overrides import node_title
from videosdgx.client.tracker import as_list, as_object


def describe_node(workflow: dict, node_id: Any, class_type: Any = None) -> str:
    """`node 3 KSampler "Sampler"`."""
    node = as_object(workflow.get(str(node_id)))
    return f'node {node_id} {class_type or node.get("class_type", "?")} "{node_title(node) or "?"}"'


def format_validation_error(body: Any, workflow: dict) -> str:
    """Every error of a 400 answer to POST /prompt: the prompt-level one, then each node's."""
    if not isinstance(body, dict):
        return f"The server rejected the prompt: {body!r:.300}"
    error = body.get("error")
    if isinstance(error, dict):
        lines = [f"The server rejected the prompt: {error.get('message', '')} ({error.get('type', 'error')})"]
        if error.get("details"):
            lines.append(f"  {error['details']}")
    else:
        lines = [f"The server rejected the prompt: {error}"]
    for node_id, node_errors in as_object(body.get("node_errors")).items():
        node_errors = as_object(node_errors)
        lines.append(f"  {describe_node(workflow, node_id, node_errors.get('class_type'))}:")
        for item in as_list(node_errors.get("errors")):
            item = as_object(item)
            details = f" [{item['details']}]" if item.get("details") else ""
            lines.append(f"    - {item.get('type', 'error')}: {item.get('message', '')}{details}")
    return "\n".join(lines)


def format_execution_error(data: dict, workflow: dict, traceback_lines: int = 8) -> str:
    """The failing node, its exception and the tail of its traceback."""
    lines = [
        f"Execution failed in {describe_node(workflow, data.get('node_id', '?'), data.get('node_type'))}: "
        f"{data.get('exception_type', 'Exception')}: {str(data.get('exception_message', '')).strip()}"
    ]
    traceback = "".join(str(line) for line in as_list(data.get("traceback"))).splitlines()
    if traceback:
        lines.append(f"Traceback (last {min(traceback_lines, len(traceback))} lines):")
        lines += [f"  {line}" for line in traceback[-traceback_lines:]]
    return "\n".join(lines)


def format_interrupted(data: dict, workflow: dict) -> str:
    """Where the server stopped an interrupted prompt."""
    if data.get("node_id") is None:
        return f"The prompt {data.get('prompt_id', '')} was interrupted on the server"
    return (f"The prompt {data.get('prompt_id', '')} was interrupted on the server during "
            f"{describe_node(workflow, data['node_id'], data.get('node_type'))}")
