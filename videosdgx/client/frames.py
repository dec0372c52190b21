"""Binary websocket frames: a 4-byte big-endian event type, then its payload (spec §5, protocol.py)."""

import json
import logging
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_EXTENSIONS = {1: "jpg", 2: "png", "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


@dataclass(frozen=True)
class PreviewImage:
    """An encoded preview; `node_id`/`prompt_id` are known only for type-4 frames."""

    data: bytes
    extension: str
    node_id: str | None = None
    prompt_id: str | None = None


@dataclass(frozen=True)
class ProgressText:
    """A progress text a node sent (type 3)."""

    node_id: str
    text: str


def decode_binary(frame: bytes) -> PreviewImage | ProgressText | None:
    """The event in a binary frame, or None for an unknown or truncated one."""
    if len(frame) < 8:
        return None
    (event,) = struct.unpack(">I", frame[:4])
    if event in (PREVIEW_IMAGE, UNENCODED_PREVIEW_IMAGE):
        (image_type,) = struct.unpack(">I", frame[4:8])
        return PreviewImage(frame[8:], _extension(image_type))
    if event == TEXT:
        (length,) = struct.unpack(">I", frame[4:8])
        return ProgressText(frame[8:8 + length].decode(errors="replace"),
                            frame[8 + length:].decode(errors="replace"))
    if event == PREVIEW_IMAGE_WITH_METADATA:
        (length,) = struct.unpack(">I", frame[4:8])
        try:
            metadata = json.loads(frame[8:8 + length])
        except ValueError:
            log.debug("Preview frame with unreadable metadata ignored")
            return None
        if not isinstance(metadata, dict):
            log.debug("Preview frame whose metadata is not a JSON object ignored")
            return None
        node_id, prompt_id = metadata.get("node_id"), metadata.get("prompt_id")
        return PreviewImage(frame[8 + length:], _extension(metadata.get("image_type")),
                            None if node_id is None else str(node_id), None if prompt_id is None else str(prompt_id))
    log.debug("Binary frame of unknown type %d ignored", event)
    return None


def _extension(image_type: object) -> str:
    return IMAGE_EXTENSIONS.get(image_type, "bin") if isinstance(image_type, (int, str)) else "bin"
