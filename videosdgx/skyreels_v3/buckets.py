"""SkyReels V3 output sizes: the official aspect-ratio buckets of each resolution tier (skyreels_v3.md §1)."""

from __future__ import annotations

from videosdgx.runtime.errors import ConfigurationError

# tier -> {height / width ratio: (height, width)}, as published in SkyReels-V3 `config.py`.
BUCKETS: dict[str, dict[float, tuple[int, int]]] = {
    "480P": {
        0.38: (392, 1046), 0.43: (420, 980), 0.48: (444, 925), 0.50: (452, 904), 0.53: (466, 880),
        0.54: (470, 870), 0.56: (480, 854), 0.62: (506, 810), 0.67: (522, 784), 0.75: (554, 738),
        1.00: (640, 640), 1.33: (740, 555), 1.50: (784, 522), 1.78: (854, 480), 1.89: (880, 466),
        2.00: (906, 454), 2.08: (924, 444),
    },
    "540P": {
        0.34: (416, 1216), 0.38: (464, 1216), 0.40: (464, 1152), 0.43: (496, 1152), 0.48: (496, 1024),
        0.50: (512, 1024), 0.53: (512, 960), 0.57: (544, 960), 0.60: (544, 912), 0.63: (576, 912),
        0.67: (576, 864), 0.72: (624, 864), 0.75: (624, 832), 0.79: (656, 832), 0.84: (656, 784),
        0.92: (720, 784), 1.00: (720, 720), 1.09: (784, 720), 1.26: (784, 624), 1.33: (832, 624),
        1.40: (832, 592), 1.49: (880, 592), 1.62: (880, 544), 1.78: (960, 544), 1.88: (960, 512),
        2.00: (1024, 512), 2.13: (1024, 480),
    },
    "720P": {
        0.38: (588, 1568), 0.43: (628, 1466), 0.48: (666, 1388), 0.50: (678, 1356), 0.53: (698, 1318),
        0.54: (706, 1306), 0.56: (720, 1280), 0.62: (758, 1212), 0.67: (784, 1176), 0.75: (832, 1110),
        1.00: (960, 960), 1.33: (1108, 832), 1.50: (1176, 784), 1.78: (1280, 720), 1.89: (1320, 698),
        2.00: (1358, 680), 2.08: (1386, 666),
    },
}
RESOLUTIONS = tuple(BUCKETS)


def bucket_size(height: int, width: int, resolution: str) -> tuple[int, int]:
    """`(height, width)` of the bucket whose h/w ratio is closest to the input's, rounded down to multiples of 16
    (the first bucket wins a tie, as in the official `min` over the table)."""
    if resolution not in BUCKETS:
        raise ConfigurationError(
            f"Unknown SkyReels V3 resolution {resolution!r}; choose one of {', '.join(RESOLUTIONS)}."
        )
    if height < 1 or width < 1:
        raise ConfigurationError(f"Cannot size a video from an empty {width}x{height} input.")
    table = BUCKETS[resolution]
    ratio = min(table, key=lambda r: abs(r - height / width))
    bucket_h, bucket_w = table[ratio]
    return bucket_h // 16 * 16, bucket_w // 16 * 16
