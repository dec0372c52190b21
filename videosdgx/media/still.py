"""One still image through H.264 and back: the compression LTX-2 models were trained to see on conditioning images.

The frame is cropped to even sides, converted to yuv420p, encoded alone with libx264 (preset veryfast, CRF `crf`,
one thread, so the result does not depend on the machine's core count) into an in-memory MP4 and decoded back to
RGB (ltx-pipelines `media_io.preprocess` @ 400fd310 does the same with PyAV). CRF 0 leaves the image as it is.
"""

from __future__ import annotations

import io

import av
import numpy as np
import torch

from videosdgx.media.video import GET_H264, _has_encoder
from videosdgx.runtime.errors import ConfigurationError

MAX_CRF = 51  # libx264's range for 8-bit video


def h264_still(image: np.ndarray, crf: int) -> np.ndarray:
    """RGB uint8 `[H, W, 3]` re-compressed at `crf` (0: unchanged); sides are cropped to even numbers."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ConfigurationError(f"Expected an RGB uint8 image [height, width, 3], got {image.dtype} "
                                 f"{list(image.shape)}.")
    if crf == 0 or min(image.shape[:2]) < 2:
        return image
    if not 0 < crf <= MAX_CRF:
        raise ConfigurationError(f"image_crf must be 0 (off) to {MAX_CRF}, got {crf}.")
    if not _has_encoder("libx264"):
        raise ConfigurationError(f"Re-compressing a conditioning image needs libx264, which this PyAV build lacks. "
                                 f"{GET_H264} Or pass --option image_crf=0.")
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height = width, height
        stream.thread_count = 1
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="rgb24")
        container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = next(container.decode(video=0))
    return decoded.to_ndarray(format="rgb24")


def recompress_image(image: torch.Tensor, crf: int) -> torch.Tensor:
    """The first image of a ComfyUI IMAGE `[B, H, W, 3]` (0..1) through `h264_still`: `[1, H', W', 3]` float32
    (quantised to 8 bits first); returned as is when `crf` is 0."""
    if crf == 0:
        return image
    if image.ndim != 4 or image.shape[-1] < 3:
        raise ConfigurationError(f"Expected an IMAGE tensor [batch, height, width, 3], got shape {list(image.shape)}.")
    pixels = (image[0, :, :, :3].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return torch.from_numpy(h264_still(pixels, crf)).float().div(255)[None]
