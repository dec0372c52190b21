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

from videosdgx.client.errors import ExecutionFailedError, RunTimeoutError, ServerUnreachableError, UsageError

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8188"
DEFAULT_REQUEST_TIMEOUT = 30.0
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


def no_answer(server: str, waiting_for: str, timeout: float) -> RunTimeoutError:
    """The error for a server that accepted the connection but did not answer in time (never retried)."""
    return RunTimeoutError(
        f"The ComfyUI server at {server} accepted the connection but did not answer {waiting_for} within "
        f"{timeout:g} s. It may be hung or busy, or the address is not a ComfyUI server: check it, or allow more "
        "time with --request-timeout SECONDS.")


def with_retries(action: Callable[[], T], policy: RetryPolicy, server: str, retry_on: tuple = CONNECTION_ERRORS) -> T:
    """Run `action`, retrying on connection errors; raise ServerUnreachableError once all attempts failed.

    A RunTimeoutError (connected, but no answer in time) is not retried: waiting again would only double the wait.
    """
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

    def __init__(self, url: str = DEFAULT_SERVER, retry: RetryPolicy = RetryPolicy(),
                 timeout: float = DEFAULT_REQUEST_TIMEOUT):
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        try:
            parts.port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
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
        except TimeoutError:
            raise no_answer(self.url, f"{method} {path}", self.timeout) from None
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
        """Stream a GET response into `destination` (written as `.part`, renamed when complete, removed if not)."""
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
            except TimeoutError:
                raise no_answer(self.url, f"GET {path}", self.timeout) from None
            finally:
                connection.close()

        try:
            with_retries(fetch, self.retry, self.url)
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        connection = kind(self._parts.hostname, self._parts.port, timeout=self.timeout)
        try:
            connection.connect()
        except TimeoutError:
            raise no_answer(self.url, "the connection request (TCP handshake)", self.timeout) from None
        return connection

    def _exchange(self, connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
                  headers: dict[str, str]) -> Response:
        try:
            connection.request(method, self._prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            return Response(response.status, response.read())
        except TimeoutError:
            raise no_answer(self.url, f"{method} {path}", self.timeout) from None
        finally:
            connection.close()

    def get_object(self, path: str) -> dict:
        """GET a route whose answer must be a JSON object; anything else is an ExecutionFailedError."""
        answer = self.get_json(path)
        if not isinstance(answer, dict):
            raise ExecutionFailedError(
                f"GET {path} on {self.url} answered {describe_json(answer)} where ComfyUI answers a JSON object. "
                "Is --server a ComfyUI server (and of a version that has this route)?")
        return answer

    def _expect_ok(self, response: Response, method: str, path: str) -> Any:
        if response.status != 200:
            raise ExecutionFailedError(
                f"{method} {path} on {self.url} answered HTTP {response.status}: {response.body[:300]!r}")
        return response.json()


def describe_json(value: Any) -> str:
    """`a list`, `a string`, `no JSON`...: what a server answered, for messages about unexpected shapes."""
    if value is None:
        return "no JSON (or null)"
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return f"{kinds.get(type(value), type(value).__name__)} ({json.dumps(value)[:80]})"
