"""Output files named in `/history/{id}`, checked to stay inside the output folder, fetched via /view."""

import logging
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from videosdgx.client.errors import UnsafeOutputPathError
from videosdgx.client.transport import ComfyServer

log = logging.getLogger(__name__)

OUTPUT_KEYS = ("images", "gifs", "video", "videos", "audio")


@dataclass(frozen=True)
class OutputFile:
    """One file a node produced on the server."""

    node_id: str
    filename: str
    subfolder: str
    type: str

    @property
    def view_path(self) -> str:
        """The /view request that returns the file."""
        query = urllib.parse.urlencode({"filename": self.filename, "subfolder": self.subfolder, "type": self.type})
        return f"/view?{query}"


def list_outputs(entry: dict) -> list[OutputFile]:
    """Every file under the output keys of a history entry, in node order."""
    files = []
    for node_id, node_output in (entry.get("outputs") or {}).items():
        for key in OUTPUT_KEYS:
            for item in node_output.get(key) or []:
                if isinstance(item, dict) and "filename" in item:
                    files.append(OutputFile(str(node_id), str(item["filename"]), str(item.get("subfolder") or ""),
                                            str(item.get("type") or "output")))
    return files


def safe_destination(out_dir: Path, item: OutputFile) -> Path:
    """Where `item` goes under `out_dir`; raise UnsafeOutputPathError if it would land anywhere else."""
    for part in (item.subfolder, item.filename):
        path = PurePosixPath(part)
        if "\\" in part or "\0" in part or path.is_absolute() or ".." in path.parts:
            raise _unsafe(item)
    root = out_dir.resolve()
    target = (root / item.subfolder / item.filename).resolve()
    if not item.filename or target == root or not target.is_relative_to(root):
        raise _unsafe(item)
    return target


def download_outputs(server: ComfyServer, entry: dict, out_dir: Path) -> list[Path]:
    """Fetch every output into `out_dir`; all names are checked before anything is written."""
    items = list_outputs(entry)
    targets = {}
    for item in items:
        targets.setdefault(safe_destination(out_dir, item), item)
    for target, item in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        server.download(item.view_path, target)
        log.info("Saved %s (node %s)", target, item.node_id)
    return list(targets)


def _unsafe(item: OutputFile) -> UnsafeOutputPathError:
    return UnsafeOutputPathError(
        f"Refused output of node {item.node_id}: subfolder {item.subfolder!r} / filename {item.filename!r} "
        "would be written outside the output folder. Nothing was downloaded.")
