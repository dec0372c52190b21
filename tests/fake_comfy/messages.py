"""Builders for the websocket messages and binary frames a ComfyUI server sends (spec §5)."""

import json
import struct
from typing import Any


def event(kind: str, **data: Any) -> dict:
    """A text event `{"type": kind, "data": data}`."""
    return {"type": kind, "data": data}


def status(queue_remaining: int, sid: str | None = None) -> dict:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return {"type": "status", "data": data}


def execution_start(prompt_id: str) -> dict:
    return event("execution_start", prompt_id=prompt_id, timestamp=1)


def execution_cached(prompt_id: str, nodes: list[str]) -> dict:
    return event("execution_cached", nodes=nodes, prompt_id=prompt_id, timestamp=2)


def executing(prompt_id: str, node: str | None) -> dict:
    return event("executing", node=node, display_node=node, prompt_id=prompt_id)


def progress(prompt_id: str, node: str, value: int, maximum: int) -> dict:
    return event("progress", value=value, max=maximum, prompt_id=prompt_id, node=node)


def executed(prompt_id: str, node: str, output: dict) -> dict:
    return event("executed", node=node, display_node=node, output=output, prompt_id=prompt_id)


def execution_success(prompt_id: str) -> dict:
    return event("execution_success", prompt_id=prompt_id, timestamp=3)


def execution_error(prompt_id: str, node_id: str, node_type: str, exception_type: str, message: str,
                    traceback: list[str]) -> dict:
    return event("execution_error", prompt_id=prompt_id, node_id=node_id, node_type=node_type, executed=[],
                 exception_message=message, exception_type=exception_type, traceback=traceback,
                 current_inputs={}, current_outputs={}, timestamp=4)


def execution_interrupted(prompt_id: str, node_id: str, node_type: str) -> dict:
    return event("execution_interrupted", prompt_id=prompt_id, node_id=node_id, node_type=node_type,
                 executed=[], timestamp=5)


def preview_image(image: bytes, image_type: int = 1) -> bytes:
    """Binary type 1: image type (1 JPEG, 2 PNG) then the encoded image."""
    return struct.pack(">II", 1, image_type) + image


def progress_text(node_id: str, text: str) -> bytes:
    """Binary type 3: node id length, node id, UTF-8 text."""
    node = node_id.encode()
    return struct.pack(">II", 3, len(node)) + node + text.encode()


def preview_with_metadata(image: bytes, metadata: dict) -> bytes:
    """Binary type 4: metadata length, JSON metadata, image."""
    encoded = json.dumps(metadata).encode()
    return struct.pack(">II", 4, len(encoded)) + encoded + image
