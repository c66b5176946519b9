"""PGM/PPM (P2, P3, P5, P6) read and written with numpy: Pillow scales 16-bit PPM samples down to 8 bits.

Maximum values 255 (8-bit) and 65535 (16-bit) are kept exactly; others are refused in one line rather
than rescaled. Bitmaps (P1, P4) go through Pillow, which keeps them exactly (mode 1).
"""

from __future__ import annotations

import numpy as np

from ..errors import PixzipError

SAMPLE_MAGICS = {b"P2": (1, False), b"P3": (3, False), b"P5": (1, True), b"P6": (3, True)}  # channels, binary
WHITESPACE = b" \t\r\n\x0b\x0c"


def is_binary_pnm(data: bytes) -> bool:
    """A PGM or PPM (plain or binary): the formats whose samples we read ourselves."""
    return data[:2] in SAMPLE_MAGICS and len(data) > 2 and data[2:3] in WHITESPACE


def _header(data: bytes, name: str) -> tuple[list[int], int]:
    """Width, height, maxval and the offset of the first sample (after exactly one whitespace)."""
    values, pos = [], 2
    while len(values) < 3:
        while pos < len(data) and (data[pos:pos + 1] in WHITESPACE or data[pos:pos + 1] == b"#"):
            if data[pos:pos + 1] == b"#":
                end = data.find(b"\n", pos)
                pos = len(data) if end < 0 else end
            pos += 1
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise PixzipError(f"{name}: PNM header is invalid")
        values.append(int(data[start:pos]))
    return values, pos + 1


def read(data: bytes, name: str, check_size) -> tuple[str, np.ndarray, int]:
    """(mode, samples (H, W, C) uint8 or uint16, bit depth); `check_size(width, height)` refuses a size
    over the caller's pixel limit before the samples are read."""
    channels, binary = SAMPLE_MAGICS[data[:2]]
    (width, height, maxval), offset = _header(data, name)
    if maxval not in (255, 65535):
        raise PixzipError(f"{name}: PNM maximum value {maxval} is not supported (255 and 65535 are)")
    if width < 1 or height < 1:
        raise PixzipError(f"{name}: PNM has no pixels")
    check_size(width, height)
    count = width * height * channels
    if binary:
        dtype = np.dtype(">u2" if maxval > 255 else np.uint8)
        if len(data) < offset + count * dtype.itemsize:
            raise PixzipError(f"{name}: PNM is truncated")
        samples = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    else:
        try:
            samples = np.array(data[offset:].split()[:count], dtype=np.int64)
        except ValueError:
            raise PixzipError(f"{name}: PNM samples are invalid") from None
        if len(samples) < count or samples.max(initial=0) > maxval:
            raise PixzipError(f"{name}: PNM is truncated or has samples over its maximum")
    depth = 16 if maxval > 255 else 8
    samples = samples.astype(np.uint16 if depth == 16 else np.uint8).reshape(height, width, channels)
    return "L" if channels == 1 else "RGB", np.ascontiguousarray(samples), depth


def write(samples: np.ndarray, depth: int) -> bytes:
    """Binary PGM (1 channel) or PPM (3 channels) at 8 or 16 bits."""
    h, w, c = samples.shape
    magic = b"P5" if c == 1 else b"P6"
    maxval = 65535 if depth == 16 else 255
    body = samples.astype(">u2" if depth == 16 else np.uint8).tobytes()
    return magic + f"\n{w} {h}\n{maxval}\n".encode() + body
