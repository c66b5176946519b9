"""The adaptive stage's binary arithmetic coder (part of its specification, entropy/adaptive.py): carry-less,
32 bits, 12-bit probabilities of a 1, a minimal flush. The C stage (csrc/adaptive.c, `code`) is the same."""

from __future__ import annotations

M32 = 0xFFFFFFFF

def _split(x1: int, x2: int, p: int) -> int:
    """The last value of the 1-bit's part of [x1, x2]: about p/4096 of it."""
    r = x2 - x1
    return x1 + (r >> 12) * p + (((r & 0xFFF) * p) >> 12)


class BinaryEncoder:
    """Carry-less 32-bit arithmetic coder: [x1, x2] narrows; equal leading bytes are written."""

    def __init__(self):
        self.x1, self.x2 = 0, M32
        self.out = bytearray()

    def code(self, p: int, y: int) -> int:
        mid = _split(self.x1, self.x2, p)
        if y:
            self.x2 = mid
        else:
            self.x1 = mid + 1
        while ((self.x1 ^ self.x2) & 0xFF000000) == 0:
            self.out.append(self.x2 >> 24)
            self.x1 = (self.x1 << 8) & M32
            self.x2 = ((self.x2 << 8) & M32) | 255
        return y

    def finish(self) -> bytes:
        """The fewest bytes k (0..4) such that they, followed by the zeros the decoder reads past the
        end, make a number in [x1, x2]."""
        for k in range(5):
            unit = 1 << (32 - 8 * k)
            v = -(-self.x1 // unit) * unit
            if v <= self.x2:
                self.out += (v >> (32 - 8 * k)).to_bytes(k, "big") if k else b""
                return bytes(self.out)
        raise AssertionError("unreachable: k = 4 gives x1")


class BinaryDecoder:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0
        self.x1, self.x2, self.x = 0, M32, 0
        for _ in range(4):
            self.x = (self.x << 8) | self._byte()

    def _byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def code(self, p: int, y=None) -> int:
        mid = _split(self.x1, self.x2, p)
        y = int(self.x <= mid)
        if y:
            self.x2 = mid
        else:
            self.x1 = mid + 1
        while ((self.x1 ^ self.x2) & 0xFF000000) == 0:
            self.x1 = (self.x1 << 8) & M32
            self.x2 = ((self.x2 << 8) & M32) | 255
            self.x = ((self.x << 8) & M32) | self._byte()
        return y

    def exact(self) -> bool:
        """Whether the stream was used to its end, and past it only by the flush's missing bytes
        (0..4): false for most truncated, extended or corrupted streams."""
        return len(self.data) <= self.pos <= len(self.data) + 4
