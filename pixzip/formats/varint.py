"""LEB128 varints and the strict reader of the formats' fields (docs/FORMAT.md): one writer and one
reader for the container, the transform record, the 16-bit split records, the low-part streams and the
lanes' states."""

from __future__ import annotations

import struct
from typing import Callable


def varint(n: int) -> bytes:
    """n >= 0 as little-endian groups of 7 bits, the high bit set on all but the last byte."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Reader:
    """Strict reads from bytes: a field past the end or a varint too long is an error of the caller's
    choosing, `fail(what)` (e.g. "field beyond its end"), never an IndexError."""

    def __init__(self, data: bytes, fail: Callable[[str], Exception]):
        self.data, self.pos, self.fail = data, 0, fail

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail("field beyond its end")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def varint(self, max_bits: int = 63) -> int:
        """LEB128 of at most ceil(max_bits / 7) bytes (63 bits: 9 bytes)."""
        value = 0
        for shift in range(0, max_bits, 7):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise self.fail("varint too long")

    def blob(self) -> bytes:
        """A field of bytes behind its varint length."""
        return self.take(self.varint())
