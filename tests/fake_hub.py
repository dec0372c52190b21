"""A local stand-in for the Hugging Face Hub file endpoints, so download tests run without network.

Serves `HEAD`/`GET /{owner}/{name}/resolve/{revision}/{path}` with the headers `hf_hub_download` relies on
(X-Repo-Commit, ETag, Content-Length; 206 + Content-Range for `Range: bytes=N-` resumes; X-Error-Code on errors).
Point huggingface_hub at it with HF_ENDPOINT=hub.url. Threaded, bound to 127.0.0.1 on an ephemeral port, and
bounded: it answers at most `max_requests` requests and shuts itself down after `max_seconds`.

Also the tree API `HfApi.list_repo_tree` calls: `GET /api/models/{owner}/{name}/tree/{revision}[/{quoted folder}]`
(params recursive, expand) answering the Hub's JSON items (`type` file/directory, `oid`, `size`, `path`, and for LFS
files `lfs` {oid = sha256, size, pointerSize}), paginated with a `Link: <next>; rel="next"` header and a `cursor`
param as the Hub does, 404 EntryNotFound for a folder that does not exist. Files whose names end in `LFS_SUFFIXES`
are LFS files. And plain files outside the Hub (`raw`: URL path -> content, as raw.githubusercontent.com serves
them: ETag, Content-Length, Range, no Hub headers).

Knobs: `drop_once` (paths whose first full GET is cut off mid-file), `truncate` (path -> bytes served, on HEAD and
GET alike, as a broken mirror would), `gated` (repo -> the token it requires, else 401 GatedRepo), `stall_after`
(path -> bytes sent before the answer stalls until the hub stops, as a dead connection would), `listed` (path ->
fields that replace those of its tree item, as a listing out of step with the files would), `page_size` (tree items
per page); every request is recorded in `requests`, and `body_bytes` counts the file bytes sent (`sent` per path).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".npz")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<revision>[^/?]+)(?:/(?P<folder>[^?]*))?$")


@dataclass(frozen=True)
class Request:
    method: str
    key: str  # "owner/name/path"
    range: str | None
    authorization: str | None = None


class FakeHub:
    def __init__(self, files: dict[str, bytes], max_requests: int = 200, max_seconds: float = 60.0):
        self.files = dict(files)  # "owner/name/path/in/repo" -> content
        self.raw: dict[str, bytes] = {}  # "/url/path" -> content, served outside the Hub API
        self.listed: dict[str, dict] = {}
        self.page_size = 1000
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
            url = urlsplit(self.path)
            tree = _TREE.match(url.path)
            match = _RESOLVE.match(self.path)
            key = f"{match['repo']}/{match['path']}" if match else url.path
            if not hub.record(Request(self.command, key, self.headers.get("Range"), self.headers.get("Authorization"))):
                return self._error(503, "Overloaded", "fake hub request limit reached")
            if tree is not None:
                return self._tree(tree, parse_qs(url.query))
            if match is None and key in hub.raw:
                content = hub.raw[key][: hub.truncate.get(key)]
            elif match is None or key not in hub.files:
                return self._error(404, "EntryNotFound" if match else None, "Entry not found")
            else:
                content = hub.files[key][: hub.truncate.get(key)]
            token = hub.gated.get(match["repo"]) if match else None
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                return self._error(401, "GatedRepo", f"Access to model {match['repo']} is restricted.")
            start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-"))[1])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(content) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
            if match:
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

        def _tree(self, tree: re.Match, query: dict[str, list[str]]) -> None:
            repo, folder = tree["repo"], unquote(tree["folder"] or "").strip("/")
            token = hub.gated.get(repo)
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                return self._error(401, "GatedRepo", f"Access to model {repo} is restricted.")
            prefix = f"{repo}/{folder}/" if folder else f"{repo}/"
            paths = sorted(k[len(repo) + 1:] for k in hub.files if k.startswith(prefix))
            if not paths:
                return self._error(404, "EntryNotFound", f"{folder} does not exist on \"{tree['revision']}\"")
            items, folders = [], set()
            for path in paths:
                rest = path[len(folder) + 1 if folder else 0:]
                if "/" in rest and query.get("recursive") != ["true"]:
                    folders.add(path[: len(path) - len(rest)] + rest.split("/")[0])
                    continue
                items.append(self._tree_item(repo, path))
            items += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                      for f in sorted(folders)]
            start = int(query.get("cursor", ["0"])[0])
            page = items[start:start + hub.page_size]
            body = json.dumps(page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if start + hub.page_size < len(items):
                base = urlsplit(self.path)
                rest = "&".join(f"{k}={v[0]}" for k, v in query.items() if k != "cursor")
                link = f"{hub.url}{base.path}?{rest}&cursor={start + hub.page_size}"
                self.send_header("Link", f'<{link}>; rel="next"')
            self.end_headers()
            self.wfile.write(body)

        @staticmethod
        def _tree_item(repo: str, path: str) -> dict:
            content = hub.files[f"{repo}/{path}"]
            item = {"type": "file", "oid": hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest(),
                    "size": len(content), "path": path}
            if path.endswith(LFS_SUFFIXES):
                item["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
            return {**item, **hub.listed.get(f"{repo}/{path}", {})}

        def _error(self, status: int, code: str | None, message: str) -> None:
            self.send_response(status)
            if code is not None:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
