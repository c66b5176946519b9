"""LEB128 varints, the containers' integer fields (docs/FORMAT.md): one writer for the container, the
16-bit split records and the low-part streams."""


def varint(n: int) -> bytes:
    """n >= 0 as little-endian groups of 7 bits, the high bit set on all but the last byte."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
