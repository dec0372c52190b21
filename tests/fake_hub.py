"""A local stand-in for the Hugging Face Hub file endpoints, so download tests run without network.

Serves `HEAD`/`GET /{owner}/{name}/resolve/{revision}/{path}` with the headers `hf_hub_download` relies on
(X-Repo-Commit, ETag, Content-Length; 206 + Content-Range for `Range: bytes=N-` resumes; X-Error-Code on errors).
Point huggingface_hub at it with HF_ENDPOINT=hub.url. Threaded, bound to 127.0.0.1 on an ephemeral port, and
bounded: it answers at most `max_requests` requests and shuts itself down after `max_seconds`.

Knobs: `drop_once` (paths whose first full GET is cut off mid-file), `truncate` (path -> bytes served, on HEAD and
GET alike, as a broken mirror would), `gated` (repo -> the token it requires, else 401 GatedRepo), `stall_after`
(path -> bytes sent before the answer stalls until the hub stops, as a dead connection would); every request is
recorded in `requests`, and `body_bytes` counts the file bytes sent (`sent` per path).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")


@dataclass(frozen=True)
class Request:
    method: str
    key: str  # "owner/name/path"
    range: str | None


class FakeHub:
    def __init__(self, files: dict[str, bytes], max_requests: int = 200, max_seconds: float = 60.0):
        self.files = dict(files)  # "owner/name/path/in/repo" -> content
        self.drop_once: set[str] = set()
        self.truncate: dict[str, int] = {}
        self.gated: dict[str, str] = {}
        self.stall_after: dict[str, int] = {}
        self.body_bytes = 0
        self.sent: dict[str, int] = {}
        self.stopping = threading.Event()
        self.requests: list[Request] = []
        self.max_requests = max_requests
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(max_seconds, self.stop)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, method: str = "GET") -> int:
        return sum(r.method == method for r in self.requests)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self._timer.cancel()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def record(self, request: Request) -> bool:
        with self._lock:
            self.requests.append(request)
            return len(self.requests) <= self.max_requests


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10

        def do_HEAD(self) -> None:
            self._serve(send_body=False)

        def do_GET(self) -> None:
            self._serve(send_body=True)

        def log_message(self, *args) -> None:
            pass

        def _serve(self, send_body: bool) -> None:
            match = _RESOLVE.match(self.path)
            key = f"{match['repo']}/{match['path']}" if match else self.path
            if not hub.record(Request(self.command, key, self.headers.get("Range"))):
                return self._error(503, "Overloaded", "fake hub request limit reached")
            if match is None or key not in hub.files:
                return self._error(404, "EntryNotFound", "Entry not found")
            token = hub.gated.get(match["repo"])
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                return self._error(401, "GatedRepo", f"Access to model {match['repo']} is restricted.")
            content = hub.files[key][: hub.truncate.get(key)]
            start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-"))[1])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(content) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if not send_body:
                return
            if key in hub.drop_once and not start:
                hub.drop_once.discard(key)
                self._send(key, content[: len(content) // 2])
                self.close_connection = True
                return
            if key in hub.stall_after:
                self._send(key, content[start:hub.stall_after[key]])
                self.wfile.flush()
                hub.stopping.wait()
                self.close_connection = True
                return
            self._send(key, content[start:])

        def _send(self, key: str, body: bytes) -> None:
            with hub._lock:
                hub.body_bytes += len(body)
                hub.sent[key] = hub.sent.get(key, 0) + len(body)
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
