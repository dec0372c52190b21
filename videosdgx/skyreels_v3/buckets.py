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
# The talking avatar's own portrait tables (`avatar_util.py`: ASPECT_RATIO_627 for 480P, ASPECT_RATIO_960 for 720P),
# in their published order (the first of equally close ratios wins).
AVATAR_BUCKETS: dict[str, dict[float, tuple[int, int]]] = {
    "480P": {
        0.26: (320, 1216), 0.38: (384, 1024), 0.50: (448, 896), 0.577: (480, 832), 0.67: (512, 768),
        0.82: (576, 704), 1.00: (640, 640), 1.22: (704, 576), 1.50: (768, 512), 1.86: (832, 448),
        1.73: (832, 480), 2.00: (896, 448), 2.50: (960, 384), 2.83: (1088, 384), 3.60: (1152, 320),
        3.80: (1216, 320), 4.00: (1280, 320),
    },
    "720P": {
        0.22: (448, 2048), 0.29: (512, 1792), 0.36: (576, 1600), 0.45: (640, 1408), 0.55: (704, 1280),
        0.56: (720, 1280), 0.63: (768, 1216), 0.76: (832, 1088), 0.88: (896, 1024), 1.00: (960, 960),
        1.14: (1024, 896), 1.31: (1088, 832), 1.50: (1152, 768), 1.58: (1216, 768), 1.82: (1280, 704),
        1.78: (1280, 720), 1.91: (1344, 704), 2.20: (1408, 640), 2.30: (1472, 640), 2.67: (1536, 576),
        2.89: (1664, 576), 3.62: (1856, 512), 3.75: (1920, 512),
    },
}


def avatar_bucket_size(height: int, width: int, resolution: str) -> tuple[int, int]:
    """`(height, width)` of the avatar bucket closest to a portrait's h/w ratio (used as published)."""
    if resolution not in AVATAR_BUCKETS:
        raise ConfigurationError(
            f"The SkyReels V3 avatar makes {' or '.join(AVATAR_BUCKETS)}, not {resolution!r}."
        )
    table = AVATAR_BUCKETS[resolution]
    return table[min(table, key=lambda r: abs(r - height / width))]


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
