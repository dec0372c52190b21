"""HTTP requests to a ComfyUI server, retried with exponential backoff while it cannot be reached."""

import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from videosdgx.client.errors import ExecutionFailedError, ServerUnreachableError, UsageError

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8188"
CONNECTION_ERRORS = (OSError, http.client.HTTPException)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry an unreachable server."""

    attempts: int = 6
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 8.0

    def delays(self) -> list[float]:
        """Seconds to wait before each retry: one fewer than `attempts`, growing geometrically."""
        return [min(self.initial_delay * self.factor**i, self.max_delay) for i in range(self.attempts - 1)]


def with_retries(action: Callable[[], T], policy: RetryPolicy, server: str, retry_on: tuple = CONNECTION_ERRORS) -> T:
    """Run `action`, retrying on connection errors; raise ServerUnreachableError once all attempts failed."""
    started = time.monotonic()
    for delay in [*policy.delays(), None]:
        try:
            return action()
        except retry_on as exc:
            error = exc
            if delay is None:
                break
            log.debug("%s unreachable (%s); retrying in %.2f s", server, exc, delay)
            time.sleep(delay)
    raise ServerUnreachableError(
        f"Cannot reach the ComfyUI server at {server} after {policy.attempts} attempts over "
        f"{time.monotonic() - started:.1f} s ({str(error) or type(error).__name__}). Start ComfyUI "
        "(for example `python main.py --listen 127.0.0.1 --port 8188`) or pass the right --server URL."
    )


@dataclass(frozen=True)
class Response:
    """Status and body of one HTTP exchange."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class ComfyServer:
    """The HTTP side of one ComfyUI server (routes of spec §5, optionally under a path prefix)."""

    def __init__(self, url: str = DEFAULT_SERVER, retry: RetryPolicy = RetryPolicy(), timeout: float = 30.0):
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"Server URL {url!r} is not an http(s) URL such as {DEFAULT_SERVER}")
        self.url = url.rstrip("/")
        self.retry = retry
        self.timeout = timeout
        self._parts = parts
        self._prefix = parts.path.rstrip("/")

    def websocket_url(self, client_id: str) -> str:
        """The `/ws` address for `client_id` (ws:// or wss:// after the server's scheme)."""
        scheme = "wss" if self._parts.scheme == "https" else "ws"
        return f"{scheme}://{self._parts.netloc}{self._prefix}/ws?clientId={urllib.parse.quote(client_id)}"

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                *, resend: bool = True) -> Response:
        """One exchange. With `resend=False` only a failed connect is retried: the request is never sent twice."""
        headers = {"Content-Type": content_type} if content_type else {}
        if resend:
            return with_retries(lambda: self._exchange(self._connect(), method, path, body, headers),
                                self.retry, self.url)
        connection = with_retries(self._connect, self.retry, self.url)
        try:
            return self._exchange(connection, method, path, body, headers)
        except CONNECTION_ERRORS as exc:
            raise ServerUnreachableError(
                f"The ComfyUI server at {self.url} dropped the connection during {method} {path} ({exc}). "
                "The request was not sent again, so that the prompt cannot run twice; check the server's queue."
            ) from exc

    def get_json(self, path: str) -> Any:
        """GET a JSON route; any status but 200 is an error."""
        return self._expect_ok(self.request("GET", path), "GET", path)

    def post_json(self, path: str, payload: Any, *, resend: bool = True) -> Response:
        """POST a JSON body and return the raw response (the caller reads error statuses)."""
        return self.request("POST", path, json.dumps(payload).encode(), "application/json", resend=resend)

    def download(self, path: str, destination: Path, chunk_size: int = 1 << 20) -> None:
        """Stream a GET response into `destination` (written as `.part`, renamed when complete)."""
        partial = destination.with_name(destination.name + ".part")

        def fetch() -> None:
            connection = self._connect()
            try:
                connection.request("GET", self._prefix + path)
                response = connection.getresponse()
                if response.status != 200:
                    raise ExecutionFailedError(
                        f"GET {path} answered {response.status}: {response.read()[:300]!r}")
                with partial.open("wb") as sink:
                    while chunk := response.read(chunk_size):
                        sink.write(chunk)
            finally:
                connection.close()

        with_retries(fetch, self.retry, self.url)
        partial.replace(destination)

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        connection = kind(self._parts.hostname, self._parts.port, timeout=self.timeout)
        connection.connect()
        return connection

    def _exchange(self, connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
                  headers: dict[str, str]) -> Response:
        try:
            connection.request(method, self._prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            return Response(response.status, response.read())
        finally:
            connection.close()

    def _expect_ok(self, response: Response, method: str, path: str) -> Any:
        if response.status != 200:
            raise ExecutionFailedError(
                f"{method} {path} on {self.url} answered HTTP {response.status}: {response.body[:300]!r}")
        return response.json()
