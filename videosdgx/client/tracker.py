"""Follows the websocket events of one prompt and decides when it has ended (spec §5 event table)."""

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from videosdgx.client.overrides import node_title
from videosdgx.client.progress import ProgressLine

log = logging.getLogger(__name__)

TERMINAL = {"execution_success": "success", "execution_error": "error", "execution_interrupted": "interrupted"}
FAILED = ("execution_error", "execution_interrupted")


@dataclass(frozen=True)
class Outcome:
    """How the prompt ended, with the event data that said so."""

    status: Literal["success", "error", "interrupted"]
    data: dict[str, Any] = field(default_factory=dict)


def as_object(value: Any) -> dict:
    """`value` if it is a JSON object, else an empty one (servers are not trusted to send the documented shapes)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    """`value` if it is a JSON list, else an empty one."""
    return value if isinstance(value, list) else []


def outcome_from_history(entry: dict) -> Outcome:
    """The outcome recorded in a `/history/{id}` entry (which exists only once the prompt has ended)."""
    status = as_object(entry.get("status"))
    for message in as_list(status.get("messages")):
        if isinstance(message, list) and len(message) == 2 and message[0] in FAILED:
            return Outcome(TERMINAL[message[0]], as_object(message[1]))
    return Outcome("error" if status.get("status_str") == "error" else "success")


def count(value: Any) -> float | None:
    """A progress number, or None when the server sent something else."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


class JobTracker:
    """State of one prompt as told by its events; `describe_last_seen()` says what happened last."""

    def __init__(self, prompt_id: str, workflow: dict, progress: ProgressLine):
        self.prompt_id = prompt_id
        self.workflow = workflow
        self.progress = progress
        self.current_node: str | None = None
        self.cached_nodes: list[str] = []
        self.last_seen = "nothing yet: the prompt is queued and has not started"
        self.last_seen_at = time.monotonic()

    def handle(self, message: dict) -> Outcome | None:
        """Update from one text event; return the outcome once the prompt has ended."""
        kind, data = message.get("type"), as_object(message.get("data"))
        if kind == "status":
            remaining = as_object(as_object(data.get("status")).get("exec_info")).get("queue_remaining")
            if self.current_node is None:
                self._seen(f"server status, {remaining} prompt(s) in the queue")
            return None
        if data.get("prompt_id") != self.prompt_id:
            return None
        if kind in TERMINAL:
            return Outcome(TERMINAL[kind], data)
        if kind == "execution_start":
            self._seen("execution started")
        elif kind == "execution_cached":
            self.cached_nodes = [str(node) for node in as_list(data.get("nodes"))]
            self.progress.cached(self.cached_nodes)
            self._seen(f"{len(self.cached_nodes)} cached node(s)")
        elif kind == "executing":
            if data.get("node") is None:
                return Outcome("success", data)
            self.current_node = str(data["node"])
            self.progress.node(self.current_node, self.title(self.current_node))
            self._seen(f"node {self.describe_node(self.current_node)} started")
        elif kind == "progress":
            value, maximum = count(data.get("value")), count(data.get("max"))
            if value is None or maximum is None:
                return None
            node = str(data.get("node") or self.current_node)
            if node != self.current_node:
                self.current_node = node
                self.progress.node(node, self.title(node))
            self.progress.step(value, maximum)
            self._seen(f"{self.progress.describe_step(value, maximum)} of node {self.describe_node(node)}")
        elif kind == "executed":
            node = str(data.get("node"))
            for text in as_list(as_object(data.get("output")).get("text")):
                if isinstance(text, str) and text:
                    log.warning("node %s: %s", self.describe_node(node), text)  # e.g. the sizes it rounded
            self._seen(f"node {self.describe_node(node)} finished")
        return None

    def title(self, node_id: str) -> str:
        """The node's title in our workflow."""
        return node_title(as_object(self.workflow.get(node_id))) or "?"

    def describe_node(self, node_id: str) -> str:
        """`3 (KSampler "Sampler")`-style description."""
        node = as_object(self.workflow.get(node_id))
        return f'{node_id} ({node.get("class_type", "?")} "{self.title(node_id)}")'

    def describe_last_seen(self) -> str:
        """What happened last and how long ago."""
        return f"{self.last_seen}, {time.monotonic() - self.last_seen_at:.1f} s ago"

    def _seen(self, text: str) -> None:
        self.last_seen = text
        self.last_seen_at = time.monotonic()
