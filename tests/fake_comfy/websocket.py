"""The RFC 6455 pieces a test server needs: handshake key, server frames, reading masked client frames."""

import base64
import hashlib
import struct
from typing import BinaryIO

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack(">BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack(">BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack(">BBQ", 0x80 | opcode, 127, length)
    return header + payload


def read_frame(stream: BinaryIO) -> tuple[int, bytes] | None:
    """The next client frame as (opcode, unmasked payload), or None at end of stream."""
    header = _read_exact(stream, 2)
    if header is None:
        return None
    opcode, length = header[0] & 0x0F, header[1] & 0x7F
    if length in (126, 127):
        extended = _read_exact(stream, 2 if length == 126 else 8)
        if extended is None:
            return None
        (length,) = struct.unpack(">H" if len(extended) == 2 else ">Q", extended)
    mask = _read_exact(stream, 4) if header[1] & 0x80 else b"\0\0\0\0"
    payload = _read_exact(stream, length)
    if mask is None or payload is None:
        return None
    return opcode, bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def _read_exact(stream: BinaryIO, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = stream.read(count - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data
