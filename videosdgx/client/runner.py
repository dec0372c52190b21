"""Run one workflow on a ComfyUI server: submit, follow its events, download its outputs."""

import logging
import os
import re
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from videosdgx.client.convert import is_editor_format, to_api
from videosdgx.client.errors import (
    ExecutionFailedError,
    PromptValidationError,
    RunInterruptedError,
    RunTimeoutError,
    ServerUnreachableError,
    UsageError,
)
from videosdgx.client.frames import PreviewImage, ProgressText
from videosdgx.client.outputs import download_outputs
from videosdgx.client.overrides import Assignment, Overrides, Upload, apply_assignments, plan_overrides
from videosdgx.client.progress import ProgressLine
from videosdgx.client.reports import format_execution_error, format_interrupted, format_validation_error
from videosdgx.client.stream import ConnectionDropped, Event, EventStream
from videosdgx.client.tracker import JobTracker, Outcome, as_list, outcome_from_history
from videosdgx.client.transport import DEFAULT_REQUEST_TIMEOUT, DEFAULT_SERVER, ComfyServer, RetryPolicy, describe_json
from videosdgx.client.uploads import upload_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """Patience and extras of a run; times in seconds, None for no limit."""

    retry: RetryPolicy = RetryPolicy()
    stall_timeout: float | None = 900.0
    timeout: float | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    history_wait: float = 10.0
    poll_interval: float = 0.25
    save_previews: bool = False
    traceback_lines: int = 8
    progress_stream: TextIO | None = None


@dataclass(frozen=True)
class RunResult:
    """A finished prompt: its id, the files written and the nodes served from cache."""

    prompt_id: str
    outputs: list[Path]
    previews: list[Path] = field(default_factory=list)
    cached_nodes: list[str] = field(default_factory=list)


def run_workflow(workflow: dict, server: str = DEFAULT_SERVER, out_dir: str | Path = "outputs",
                 overrides: Overrides | None = None, *, object_info: dict | None = None,
                 settings: RunSettings = RunSettings()) -> RunResult:
    """Run `workflow` (editor or API format) on `server` and download its outputs into `out_dir`.

    Raises a ClientError subclass whose `exit_code` says how the run ended otherwise.
    """
    http = ComfyServer(server, settings.retry, settings.request_timeout)
    check_out_dir(Path(out_dir))
    if object_info is None and is_editor_format(workflow):
        object_info = http.get_object("/object_info")
    prompt = to_api(workflow, object_info)
    plan = plan_overrides(prompt, overrides or Overrides())
    prompt = apply_assignments(prompt, [_uploaded(http, item) for item in plan])
    client_id = uuid.uuid4().hex
    stream = EventStream(http.websocket_url(client_id), http.url, settings.retry, settings.poll_interval,
                         {"supports_preview_metadata": True} if settings.save_previews else None,
                         connect_timeout=settings.request_timeout)
    job = _Job(http, stream, prompt, Path(out_dir), settings)
    try:
        stream.open()
        prompt_id = job.submit(client_id)
        try:
            outcome = job.follow(prompt_id)
        except KeyboardInterrupt:
            job.interrupt(prompt_id)
            raise RunInterruptedError(
                f"Interrupted by the user; asked the server to stop prompt {prompt_id}") from None
    except KeyboardInterrupt:
        raise RunInterruptedError("Interrupted by the user before the prompt was queued") from None
    finally:
        stream.close()
        job.progress.finish()
    return job.finish(prompt_id, outcome)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that cannot be created or written before anything is submitted."""
    existing = next(p for p in (out_dir.absolute(), *out_dir.absolute().parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise UsageError(f"--out {out_dir}: {existing} is {'a broken link' if existing.is_symlink() else 'a file'}, "
                         "not a folder. Give a folder (it is created if needed).")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out_dir}: {existing} is not writable by this user. Give a folder you can write.")


def _uploaded(http: ComfyServer, item: Assignment) -> Assignment:
    if isinstance(item.value, Upload):
        return Assignment(item.node_id, item.input, upload_input(http, item.value.path))
    return item


class _Job:
    def __init__(self, http: ComfyServer, stream: EventStream, prompt: dict, out_dir: Path, settings: RunSettings):
        self.http = http
        self.stream = stream
        self.prompt = prompt
        self.out_dir = out_dir
        self.settings = settings
        self.progress = ProgressLine(len(prompt), settings.progress_stream)
        self.tracker: JobTracker | None = None
        self.previews: list[Path] = []

    def submit(self, client_id: str) -> str:
        """POST /prompt once (never re-sent); return the prompt id."""
        response = self.http.post_json("/prompt", {"prompt": self.prompt, "client_id": client_id}, resend=False)
        body = response.json()
        if response.status == 400:
            raise PromptValidationError(format_validation_error(body, self.prompt))
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if response.status != 200 or not isinstance(prompt_id, str) or not prompt_id:
            raise ExecutionFailedError(f"POST /prompt answered HTTP {response.status} without a prompt id "
                                       f"({response.body[:300]!r}): is --server a ComfyUI server?")
        log.info("Queued prompt %s", prompt_id)
        return prompt_id

    def follow(self, prompt_id: str) -> Outcome:
        """Consume events until the prompt ends; reconnect on a dropped socket, stop on stall or timeout."""
        self.tracker = JobTracker(prompt_id, self.prompt, self.progress)
        started = last_event = time.monotonic()
        while True:
            try:
                event = self.stream.receive()
            except ConnectionDropped as exc:
                log.warning("Websocket dropped (%s); reconnecting and following prompt %s", exc, prompt_id)
                self.stream.open()
                if outcome := self.server_side_outcome(prompt_id):
                    return outcome
                last_event = time.monotonic()
                continue
            now = time.monotonic()
            if event is not None:
                last_event = now
                if outcome := self.handle(event):
                    return outcome
            elif self.settings.stall_timeout is not None and now - last_event > self.settings.stall_timeout:
                return self.ended_or_timeout(
                    prompt_id, f"No event from the server for {self.settings.stall_timeout:g} s (stall timeout)")
            if self.settings.timeout is not None and now - started > self.settings.timeout:
                return self.ended_or_timeout(prompt_id, f"The run took longer than {self.settings.timeout:g} s")

    def handle(self, event: Event) -> Outcome | None:
        if isinstance(event, dict):
            return self.tracker.handle(event)
        if isinstance(event, ProgressText):
            log.info("node %s: %s", event.node_id, event.text)
        elif isinstance(event, PreviewImage) and self.settings.save_previews:
            self.save_preview(event)
        return None

    def save_preview(self, preview: PreviewImage) -> None:
        if preview.prompt_id not in (None, self.tracker.prompt_id):
            return
        node = re.sub(r"[^A-Za-z0-9_-]", "_", preview.node_id or self.tracker.current_node or "unknown")[:40]
        folder = self.out_dir / "previews"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"preview_{len(self.previews):05d}_node{node}.{preview.extension}"
            path.write_bytes(preview.data)
        except OSError as exc:
            log.warning("Preview not saved in %s: %s", folder, exc.strerror or exc)
            return
        self.previews.append(path)

    def server_side_outcome(self, prompt_id: str) -> Outcome | None:
        """After a reconnect: the outcome if the prompt ended meanwhile, None while the queue still holds it."""
        if entry := self.history_entry(prompt_id):
            return outcome_from_history(entry)
        queue = self.http.get_object("/queue")
        queued = [item[1] for key in ("queue_running", "queue_pending") for item in as_list(queue.get(key))
                  if isinstance(item, list) and len(item) > 1]
        if prompt_id in queued:
            return None
        if entry := self.wait_for_history(prompt_id):
            return outcome_from_history(entry)
        raise ExecutionFailedError(f"Prompt {prompt_id} is neither queued nor in the server's history: "
                                   "the server may have restarted. It was not submitted again.")

    def ended_or_timeout(self, prompt_id: str, reason: str) -> Outcome:
        if entry := self.history_entry(prompt_id):
            return outcome_from_history(entry)
        raise RunTimeoutError(f"{reason}. Last seen: {self.tracker.describe_last_seen()}. "
                              f"Prompt {prompt_id} may still be running on the server.")

    def history_entry(self, prompt_id: str) -> dict | None:
        path = f"/history/{urllib.parse.quote(prompt_id, safe='')}"
        entry = self.http.get_object(path).get(prompt_id)
        if entry is not None and not isinstance(entry, dict):
            raise ExecutionFailedError(f"GET {path} answered {describe_json(entry)} for prompt {prompt_id} where "
                                       "ComfyUI answers an object; its outputs are unknown. Is --server a ComfyUI "
                                       "server?")
        return entry

    def wait_for_history(self, prompt_id: str) -> dict | None:
        """Poll /history/{id}, which can lag the success message, for up to `history_wait` seconds."""
        deadline = time.monotonic() + self.settings.history_wait
        while (entry := self.history_entry(prompt_id)) is None and time.monotonic() < deadline:
            time.sleep(self.settings.poll_interval)
        return entry

    def interrupt(self, prompt_id: str) -> None:
        """POST /interrupt for our prompt, once, without retries."""
        once = ComfyServer(self.http.url, RetryPolicy(attempts=1), timeout=5.0)
        try:
            once.post_json("/interrupt", {"prompt_id": prompt_id}, resend=False)
        except ServerUnreachableError as exc:
            log.warning("Could not ask the server to interrupt prompt %s: %s", prompt_id, exc)

    def finish(self, prompt_id: str, outcome: Outcome) -> RunResult:
        if outcome.status == "error":
            raise ExecutionFailedError(
                format_execution_error(outcome.data, self.prompt, self.settings.traceback_lines))
        if outcome.status == "interrupted":
            raise RunInterruptedError(format_interrupted({"prompt_id": prompt_id, **outcome.data}, self.prompt))
        entry = self.wait_for_history(prompt_id)
        if entry is None:
            raise ExecutionFailedError(f"Prompt {prompt_id} succeeded but /history/{prompt_id} stayed empty for "
                                       f"{self.settings.history_wait:g} s, so its outputs are unknown")
        outputs = download_outputs(self.http, entry, self.out_dir)
        return RunResult(prompt_id, outputs, self.previews, self.tracker.cached_nodes)
