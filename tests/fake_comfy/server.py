"""A stdlib ComfyUI stand-in: the HTTP routes and websocket of spec §5, playing a scripted run.

Bound to 127.0.0.1 on an ephemeral port; stops when the `with` block ends or after `lifetime` seconds.
"""

import email.parser
import email.policy
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fake_comfy import messages
from fake_comfy.websocket import BINARY, CLOSE, PING, PONG, TEXT, accept_key, encode_frame, read_frame

log = logging.getLogger(__name__)

TERMINAL = {"execution_success", "execution_error", "execution_interrupted"}  # and `executing` with node None


@dataclass(frozen=True)
class Text:
    """Send a JSON text event."""

    message: dict


@dataclass(frozen=True)
class Binary:
    """Send a binary frame."""

    data: bytes


@dataclass(frozen=True)
class Drop:
    """Break the TCP connection without a close frame."""


@dataclass(frozen=True)
class Pause:
    """Wait before the next step."""

    seconds: float


@dataclass(frozen=True)
class Call:
    """Run a function in the server thread (for example to simulate Ctrl-C in the client)."""

    function: Callable[[], None]


@dataclass
class Scenario:
    """What the fake answers: the websocket script played after POST /prompt, and the HTTP data."""

    prompt_id: str = "prompt-1"
    steps: list = field(default_factory=list)
    prompt_reply: tuple[int, dict] | None = None
    outputs: dict = field(default_factory=dict)
    history_status: dict | None = None
    history_lag: int = 0
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    object_info: dict = field(default_factory=dict)
    upload_names: dict[str, str] = field(default_factory=dict)


class FakeComfy:
    """Serves one Scenario and records what the client did."""

    def __init__(self, scenario: Scenario, lifetime: float = 60.0):
        self.scenario = scenario
        self.lifetime = lifetime
        self.requests: list[tuple[str, str]] = []
        self.events: list[str] = []
        self.prompts: list[dict] = []
        self.uploads: list[dict] = []
        self.interrupts: list[dict] = []
        self.client_flags: list[dict] = []
        self.history_calls = 0
        self.finished = False
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self._next_step = 0
        self._last_executing: dict | None = None
        self._sockets: set[socket.socket] = set()
        self._lag = scenario.history_lag
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def websocket_clients(self) -> list[str]:
        return [entry.split(":", 1)[1] for entry in self.events if entry.startswith("ws:")]

    def __enter__(self) -> "FakeComfy":
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and break every open websocket; safe to call twice."""
        with self.lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
            sockets = list(self._sockets)
        self._timer.cancel()
        for sock in sockets:
            _shutdown(sock)
        self._http.shutdown()
        self._http.server_close()

    def next_step(self, client_id: str):
        """The next scripted step for this websocket client, or None (not our client, or script over)."""
        with self.lock:
            if not self.prompts or self.prompts[-1].get("client_id") != client_id:
                return None
            if self._next_step >= len(self.scenario.steps):
                return None
            step = self.scenario.steps[self._next_step]
            self._next_step += 1
            if isinstance(step, Text):
                kind, node = step.message["type"], step.message["data"].get("node")
                if kind == "executing":
                    self._last_executing = step.message
                if kind in TERMINAL or (kind == "executing" and node is None):
                    self.finished = True
            return step

    def history(self, prompt_id: str) -> dict:
        with self.lock:
            self.history_calls += 1
            if not self.finished or prompt_id != self.scenario.prompt_id:
                return {}
            if self._lag > 0:
                self._lag -= 1
                return {}
        pid = prompt_id
        status = self.scenario.history_status or {
            "status_str": "success", "completed": True,
            "messages": [["execution_start", {"prompt_id": pid}], ["execution_success", {"prompt_id": pid}]],
        }
        prompt = self.prompts[-1]
        return {pid: {"prompt": [0, pid, prompt["prompt"], {"client_id": prompt.get("client_id")}, []],
                      "outputs": self.scenario.outputs, "status": status, "meta": {}}}

    def queue(self) -> dict:
        running = [[0, self.scenario.prompt_id, {}, {}, []]] if self.prompts and not self.finished else []
        return {"queue_running": running, "queue_pending": []}

    def serve_websocket(self, handler: BaseHTTPRequestHandler, client_id: str) -> None:
        sock = handler.connection
        send_lock = threading.Lock()
        closed = threading.Event()

        def send(opcode: int, payload: bytes) -> None:
            with send_lock:
                sock.sendall(encode_frame(opcode, payload))

        def send_json(message: dict) -> None:
            send(TEXT, json.dumps(message).encode())

        def read_client() -> None:
            while (frame := read_frame(handler.rfile)) is not None:
                opcode, payload = frame
                if opcode == TEXT:
                    message = json.loads(payload)
                    if message.get("type") == "feature_flags":
                        self.client_flags.append(message.get("data") or {})
                        send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                elif opcode == PING:
                    send(PONG, payload)
                elif opcode == CLOSE:
                    try:
                        send(CLOSE, payload[:2])
                    except OSError:
                        pass
                    break
            closed.set()

        with self.lock:
            self.events.append(f"ws:{client_id}")
            self._sockets.add(sock)
            resend = self._last_executing if self.prompts and not self.finished else None
        threading.Thread(target=read_client, daemon=True).start()
        try:
            send_json(messages.status(0, sid=client_id))
            if resend:
                send_json(resend)
            while not closed.is_set() and not self.stopping.is_set():
                step = self.next_step(client_id)
                if step is None:
                    time.sleep(0.01)
                elif isinstance(step, Text):
                    send_json(step.message)
                elif isinstance(step, Binary):
                    send(BINARY, step.data)
                elif isinstance(step, Pause):
                    self.stopping.wait(step.seconds)
                elif isinstance(step, Call):
                    step.function()
                elif isinstance(step, Drop):
                    break
        except OSError:
            log.debug("websocket of %s broke", client_id)
        finally:
            with self.lock:
                self._sockets.discard(sock)
            _shutdown(sock)
            handler.close_connection = True


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _handler_for(fake: FakeComfy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = url.path.removeprefix("/api")
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            with fake.lock:
                fake.requests.append(("GET", self.path))
            if path == "/ws":
                return self.upgrade(query.get("clientId", ""))
            if path.startswith("/history/"):
                return self.reply_json(fake.history(path.removeprefix("/history/")))
            if path == "/queue":
                return self.reply_json(fake.queue())
            if path == "/object_info":
                return self.reply_json(fake.scenario.object_info)
            if path == "/view":
                key = (query.get("type", "output"), query.get("subfolder", ""), query.get("filename", ""))
                data = fake.scenario.files.get(key)
                return self.reply(200, data, "application/octet-stream") if data else self.reply(404, b"")
            self.reply(404, b"")

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path.removeprefix("/api")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with fake.lock:
                fake.requests.append(("POST", self.path))
                fake.events.append(f"POST {path}")
            if path == "/prompt":
                return self.post_prompt(json.loads(body))
            if path == "/interrupt":
                fake.interrupts.append(json.loads(body) if body else {})
                return self.reply(200, b"")
            if path == "/upload/image":
                return self.upload(body)
            self.reply(404, b"")

        def post_prompt(self, payload: dict) -> None:
            if "prompt" not in payload:
                error = {"type": "no_prompt", "message": "No prompt provided", "details": "", "extra_info": {}}
                return self.reply_json({"error": error, "node_errors": {}}, 400)
            with fake.lock:
                fake.prompts.append(payload)
            if fake.scenario.prompt_reply is not None:
                status, answer = fake.scenario.prompt_reply
                return self.reply_json(answer, status)
            self.reply_json({"prompt_id": fake.scenario.prompt_id, "number": 0, "node_errors": {}})

        def upload(self, body: bytes) -> None:
            header = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
            fields, files = {}, {}
            for part in form.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename() is not None:
                    files[name] = (part.get_filename(), part.get_payload(decode=True))
                else:
                    fields[name] = part.get_content().strip()
            filename, data = files["image"]
            fake.uploads.append({"filename": filename, "data": data, **fields})
            name = fake.scenario.upload_names.get(filename, filename)
            self.reply_json({"name": name, "subfolder": "", "type": fields.get("type", "input")})

        def upgrade(self, client_id: str) -> None:
            if self.headers.get("Upgrade", "").lower() != "websocket":
                return self.reply(400, b"expected a websocket upgrade")
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept_key(self.headers["Sec-WebSocket-Key"]))
            self.end_headers()
            fake.serve_websocket(self, client_id)

        def reply_json(self, value: Any, status: int = 200) -> None:
            self.reply(status, json.dumps(value).encode(), "application/json")

        def reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    return Handler
