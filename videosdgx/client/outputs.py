"""Output files named in `/history/{id}`, checked to stay inside the output folder, fetched via /view.

Every list of `{"filename", "subfolder", "type"}` objects under a node's output counts (images, gifs, video,
audio, latents, 3D files...). Names the server sends are not trusted: one that would land outside the output folder
is refused, the others are still saved. A file already in the folder is never overwritten: the new one gets a
numbered name.
"""

import logging
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from videosdgx.client.errors import ClientError, ExecutionFailedError, UnsafeOutputPathError
from videosdgx.client.tracker import as_list, as_object
from videosdgx.client.transport import ComfyServer, describe_json

log = logging.getLogger(__name__)

OUTPUT_KEYS = ("images", "gifs", "video", "videos", "audio", "latents")  # listed first, in this order


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

    def describe(self) -> str:
        return f"{self.type}/{self.subfolder + '/' if self.subfolder else ''}{self.filename} (node {self.node_id})"


def list_outputs(entry: dict) -> tuple[list[OutputFile], list[str]]:
    """Every file under the outputs of a history entry, in node order, and a problem line for each item that is
    a file reference of the wrong shape."""
    files, problems = [], []
    outputs = entry.get("outputs") or {}
    if not isinstance(outputs, dict):
        return [], [f"the history's outputs are {describe_json(outputs)}, not an object of node outputs"]
    for node_id, node_output in outputs.items():
        if not isinstance(node_output, dict):
            problems.append(f"the output of node {node_id} is {describe_json(node_output)}, not an object")
            continue
        known_first = sorted(node_output, key=lambda k: OUTPUT_KEYS.index(k) if k in OUTPUT_KEYS else len(OUTPUT_KEYS))
        for key in known_first:
            for item in as_list(node_output[key]):
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                fields = (item["filename"], item.get("subfolder") or "", item.get("type") or "output")
                if not all(isinstance(value, str) for value in fields):
                    problems.append(f"node {node_id} {key}: {item!r:.120} has names that are not strings")
                    continue
                files.append(OutputFile(str(node_id), *fields))
    return files, problems


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


def free_name(target: Path, taken: set[Path]) -> Path:
    """`target`, or `stem_1.ext`, `stem_2.ext`... when a file of that name exists or is already planned."""
    candidate, number = target, 0
    while candidate in taken or candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = target.with_name(f"{target.stem}_{number}{target.suffix}")
    return candidate


def download_outputs(server: ComfyServer, entry: dict, out_dir: Path) -> list[Path]:
    """Fetch every output into `out_dir` and return the saved paths.

    Items that cannot be saved (unsafe name, wrong shape, failed download, full disk) do not stop the others: after
    saving what can be saved, one ExecutionFailedError lists them (the files stay on the server).
    """
    items, problems = list_outputs(entry)
    unsafe = False
    plan: dict[Path, OutputFile] = {}
    fetched: set[str] = set()
    for item in items:
        if item.view_path in fetched:
            continue  # the same server file listed twice
        try:
            target = safe_destination(out_dir, item)
        except UnsafeOutputPathError as exc:
            problems.append(str(exc))
            unsafe = True
            continue
        fetched.add(item.view_path)
        unique = free_name(target, set(plan))
        if unique != target:
            log.warning("%s exists or is another output's name: saving %s as %s", target.name, item.describe(),
                        unique.name)
        plan[unique] = item
    saved = []
    for target, item in plan.items():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            server.download(item.view_path, target)
        except ClientError as exc:
            problems.append(f"{item.describe()}: {exc}")
            continue
        except OSError as exc:
            problems.append(f"{item.describe()} could not be written to {target}: {exc.strerror or exc}")
            continue
        log.info("Saved %s (node %s)", target, item.node_id)
        saved.append(target)
    if problems:
        raise (UnsafeOutputPathError if unsafe else ExecutionFailedError)(
            f"{len(problems)} output(s) were not saved ({len(saved)} saved in {out_dir}); they stay on the server "
            "(GET /view?filename=...&subfolder=...&type=...):\n  - " + "\n  - ".join(problems))
    return saved


def _unsafe(item: OutputFile) -> UnsafeOutputPathError:
    return UnsafeOutputPathError(
        f"Refused output of node {item.node_id}: subfolder {item.subfolder!r} / filename {item.filename!r} "
        "would be written outside the output folder")
