"""The .pxz container, format version 1 (see docs/FORMAT.md). Pure bytes: no torch, no models."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import PixzipError

MAGIC = b"\x89PXZ\r\n\x1a\n"
VERSION = 1
MODE_CODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 5, "1": 6}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}
PLANES_PER_MODE = {"L": 1, "LA": 2, "RGB": 1, "RGBA": 2, "P": 1, "1": 1}
MAX_HEADER = 1 << 26


class FormatError(PixzipError):
    """The bytes are not a valid .pxz file (the message says how)."""


@dataclass
class ModelRef:
    id: str            # sha256 hex of the integer model
    name: str


@dataclass
class Header:
    mode: str
    width: int
    height: int
    tile: int
    models: list[ModelRef]
    planes: list[tuple[int, int]]            # (model index, channels) per plane
    stream_sizes: list[int] = field(default_factory=list)   # bytes per stream, planes then tiles
    pixel_crc: int = 0
    payload_crc: int = 0
    model_bits: float = 0.0                  # the model's ideal code length, for reporting only
    icc: bytes = b""
    palette_mode: str = ""
    palette: bytes = b""
    transparency: bytes = b""
    version: int = VERSION

    @property
    def subpixels(self) -> int:
        return self.width * self.height * sum(c for _, c in self.planes)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError("header is truncated or corrupted")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def blob(self, lenfmt: str = "I") -> bytes:
        (n,) = self.unpack(lenfmt)
        return self.take(n)


def _blob(b: bytes, lenfmt: str = "I") -> bytes:
    return struct.pack("<" + lenfmt, len(b)) + b


def write(h: Header, streams: list[np.ndarray]) -> bytes:
    payload = [s.astype("<u4").tobytes() for s in streams]
    h.stream_sizes = [len(p) for p in payload]
    body = bytearray()
    body += struct.pack("<BIIH", MODE_CODES[h.mode], h.width, h.height, h.tile)
    body += struct.pack("<B", len(h.models))
    for m in h.models:
        body += bytes.fromhex(m.id) + _blob(m.name.encode(), "B")
    body += struct.pack("<B", len(h.planes))
    for model_index, channels in h.planes:
        body += struct.pack("<BB", model_index, channels)
    body += _blob(h.icc) + _blob(h.palette_mode.encode(), "B") + _blob(h.palette) + _blob(h.transparency)
    body += struct.pack("<I", len(payload)) + b"".join(struct.pack("<I", n) for n in h.stream_sizes)
    joined = b"".join(payload)
    body += struct.pack("<IId", h.pixel_crc, zlib.crc32(joined), h.model_bits)
    head = MAGIC + struct.pack("<HHI", VERSION, 0, len(body)) + bytes(body)
    return head + struct.pack("<I", zlib.crc32(head)) + joined


def read_header(data: bytes) -> tuple[Header, int]:
    """Parse and check the header; returns it and the payload offset. Checks every length against the
    actual data before anything is allocated from it."""
    if len(data) < 16 or data[:8] != MAGIC:
        if MAGIC.startswith(data[:8]) and len(data) < 16:
            raise FormatError("file is truncated")
        raise FormatError("not a pixzip file (bad magic)")
    version, flags, body_len = struct.unpack("<HHI", data[8:16])
    if version > VERSION:
        raise FormatError(f"file uses format version {version}; this pixzip reads up to version {VERSION} "
                          "(upgrade pixzip)")
    if version < 1 or flags != 0:
        raise FormatError("header is corrupted (bad version or flags)")
    end = 16 + body_len
    if body_len > MAX_HEADER or end + 4 > len(data):
        raise FormatError("file is truncated" if body_len <= MAX_HEADER else "header is corrupted")
    (crc,) = struct.unpack("<I", data[end:end + 4])
    if zlib.crc32(data[:end]) != crc:
        raise FormatError("header is corrupted (checksum mismatch)")
    r = _Reader(data[16:end])
    code, width, height, tile = r.unpack("BIIH")
    if code not in MODE_NAMES:
        raise FormatError(f"header names an unknown image mode ({code})")
    (n_models,) = r.unpack("B")
    models = [ModelRef(r.take(32).hex(), r.blob("B").decode("utf-8", "replace")) for _ in range(n_models)]
    (n_planes,) = r.unpack("B")
    planes = [r.unpack("BB") for _ in range(n_planes)]
    h = Header(MODE_NAMES[code], width, height, tile, models, planes, version=version)
    h.icc = r.blob()
    h.palette_mode = r.blob("B").decode("ascii", "replace")
    h.palette, h.transparency = r.blob(), r.blob()
    (n_streams,) = r.unpack("I")
    if n_streams * 4 > len(data):
        raise FormatError("header is corrupted (stream table)")
    h.stream_sizes = list(r.unpack(f"{n_streams}I"))
    h.pixel_crc, h.payload_crc, h.model_bits = r.unpack("IId")
    if r.pos != len(r.data):
        raise FormatError("header is corrupted (unexpected length)")
    _validate(h)
    offset = end + 4
    if offset + sum(h.stream_sizes) > len(data):
        raise FormatError(f"file is truncated ({len(data)} bytes, the header promises "
                          f"{offset + sum(h.stream_sizes)})")
    if offset + sum(h.stream_sizes) < len(data):
        raise FormatError("unexpected data after the end of the compressed streams")
    return h, offset


def _validate(h: Header):
    if h.width < 1 or h.height < 1:
        raise FormatError("header is corrupted (empty image)")
    if len(h.planes) != PLANES_PER_MODE[h.mode] or not h.models:
        raise FormatError("header is corrupted (plane table)")
    for model_index, channels in h.planes:
        if model_index >= len(h.models) or channels not in (1, 3):
            raise FormatError("header is corrupted (plane table)")
    if any(s % 4 for s in h.stream_sizes):
        raise FormatError("header is corrupted (stream sizes)")


def read_streams(data: bytes, h: Header, offset: int) -> list[np.ndarray]:
    """Split and checksum the payload."""
    payload = data[offset:offset + sum(h.stream_sizes)]
    if zlib.crc32(payload) != h.payload_crc:
        raise FormatError("compressed data is corrupted (checksum mismatch)")
    out, pos = [], 0
    for n in h.stream_sizes:
        out.append(np.frombuffer(payload, dtype="<u4", count=n // 4, offset=pos).astype(np.uint32))
        pos += n
    return out
