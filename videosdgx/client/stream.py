"""The websocket of one clientId: opened with retries, read with a short poll timeout."""

import json
import logging
from typing import Any

import websocket

from videosdgx.client.errors import ServerUnreachableError
from videosdgx.client.frames import PreviewImage, ProgressText, decode_binary
from videosdgx.client.transport import RetryPolicy, no_answer, with_retries

log = logging.getLogger(__name__)

Event = dict[str, Any] | PreviewImage | ProgressText


class ConnectionDropped(Exception):
    """The websocket closed or broke; reopen it with the same clientId."""


class EventStream:
    """Messages of `/ws?clientId=...`: JSON text events, decoded binary frames, None when nothing arrived."""

    def __init__(self, url: str, server: str, retry: RetryPolicy, poll_interval: float,
                 feature_flags: dict[str, Any] | None = None, connect_timeout: float = 10.0):
        self.url = url
        self.server = server
        self.retry = retry
        self.poll_interval = poll_interval
        self.feature_flags = feature_flags
        self.connect_timeout = connect_timeout
        self._socket: websocket.WebSocket | None = None

    def open(self) -> None:
        """Connect (retrying while the server is unreachable) and announce our feature flags."""
        self.close()

        def connect() -> websocket.WebSocket:
            try:
                return websocket.create_connection(self.url, timeout=self.connect_timeout)
            except (websocket.WebSocketTimeoutException, TimeoutError):
                raise no_answer(self.server, "the websocket handshake (GET /ws)", self.connect_timeout) from None
            except websocket.WebSocketBadStatusException as exc:
                raise ServerUnreachableError(
                    f"{self.server} refused the websocket /ws with HTTP {exc.status_code}: it is not a ComfyUI "
                    "server, or a proxy in front of it does not pass websockets. Check --server.") from None

        self._socket = with_retries(connect, self.retry, self.server,
                                    retry_on=(OSError, websocket.WebSocketException))
        self._socket.settimeout(self.poll_interval)
        if self.feature_flags:
            self._socket.send(json.dumps({"type": "feature_flags", "data": self.feature_flags}))

    def receive(self) -> Event | None:
        """The next event, or None if none arrived within the poll interval."""
        try:
            opcode, data = self._socket.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as exc:
            raise ConnectionDropped(str(exc) or type(exc).__name__) from exc
        if opcode == websocket.ABNF.OPCODE_TEXT:
            try:
                message = json.loads(data)
            except ValueError:
                log.debug("Unreadable text message ignored: %r", data[:200])
                return None
            if not isinstance(message, dict):
                log.debug("Text message that is not a JSON object ignored: %r", data[:200])
                return None
            return message
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return decode_binary(data)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionDropped("the server closed the websocket")
        return None

    def close(self) -> None:
        """Close the socket if open."""
        if self._socket is not None:
            try:
                self._socket.close(timeout=0.2)
            except (websocket.WebSocketException, OSError):
                log.debug("Websocket was already broken when closed")
            self._socket = None
