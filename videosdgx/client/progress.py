"""A plain text progress line on stderr: which node runs, and its step bar."""

import sys
from typing import TextIO

BAR_WIDTH = 24
BYTE_COUNTS = 1 << 20  # a progress maximum this large counts bytes (a loader), not sampling steps


class ProgressLine:
    """Redraws one line in place on a terminal; elsewhere writes a line per node and per 10 % of steps."""

    def __init__(self, total_nodes: int, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.total_nodes = total_nodes
        self.started: set[str] = set()
        self.label = ""
        self._drawn = ""
        self._last_decile = -1

    def cached(self, node_ids: list[str]) -> None:
        """Count nodes served from cache as done."""
        self.started.update(node_ids)
        self._draw(f"{len(node_ids)} node(s) cached", force=True)

    def node(self, node_id: str, title: str) -> None:
        """A node started executing."""
        self.started.add(node_id)
        self.label = f"[{len(self.started)}/{self.total_nodes}] node {node_id} {title}"
        self._last_decile = -1
        self._draw(self.label, force=True)

    def step(self, value: float, maximum: float) -> None:
        """Step `value` of `maximum` in the running node (bytes when `maximum` is that large)."""
        fraction = min(value / maximum, 1.0) if maximum else 0.0
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        decile = int(fraction * 10)
        self._draw(f"{self.label}: {self.describe_step(value, maximum)} [{bar}] {fraction:4.0%}",
                   force=decile != self._last_decile)
        self._last_decile = decile

    @staticmethod
    def describe_step(value: float, maximum: float) -> str:
        """`step 3/20`, or `loaded 2.6/3698.0 MB` for the byte counts loaders report."""
        if maximum >= BYTE_COUNTS:
            return f"loaded {value / 1e6:.1f}/{maximum / 1e6:.1f} MB"
        return f"step {value:g}/{maximum:g}" if isinstance(value, float) or isinstance(maximum, float) else \
            f"step {value}/{maximum}"

    def finish(self) -> None:
        """End the line so that later output starts on a fresh one."""
        if self.interactive and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = ""

    def _draw(self, text: str, force: bool) -> None:
        if self.interactive:
            self.stream.write("\r" + text.ljust(len(self._drawn)))
        elif force:
            self.stream.write(text + "\n")
        else:
            return
        self.stream.flush()
        self._drawn = text
