"""Upload input files (images, audio, video) with POST /upload/image, multipart written with the stdlib."""

import json
import mimetypes
import uuid
from pathlib import Path

from videosdgx.client.errors import ExecutionFailedError, UsageError
from videosdgx.client.transport import ComfyServer


def encode_multipart(fields: dict[str, str], file_field: str, file_name: str, data: bytes,
                     content_type: str) -> tuple[bytes, str]:
    """A multipart/form-data body with text `fields` and one file; returns (body, Content-Type header)."""
    boundary = f"videosdgx-{uuid.uuid4().hex}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    quoted_name = file_name.replace("\\", "\\\\").replace('"', '\\"')
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{quoted_name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload_input(server: ComfyServer, path: Path) -> str:
    """Upload `path` into the server's input folder and return the value a loader node expects."""
    if not path.is_file():
        raise UsageError(f"Input file {path} does not exist or is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"Cannot read the input file {path}: {exc.strerror or exc}") from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    body, header = encode_multipart({"type": "input", "overwrite": "false"}, "image", path.name, data, content_type)
    response = server.request("POST", "/upload/image", body, header)
    answer = response.json()
    if (response.status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("name"), str)
            or not answer["name"] or not isinstance(answer.get("subfolder") or "", str)):
        detail = json.dumps(answer) if answer else repr(response.body[:300])
        raise ExecutionFailedError(f"Uploading {path} failed: HTTP {response.status} {detail}")
    subfolder = answer.get("subfolder") or ""
    return f"{subfolder}/{answer['name']}" if subfolder else answer["name"]
