"""The stored entropy stage's bit packing (format v4): a plane's samples written raw at the fewest bits
that hold its levels, when that is smaller than coding it (docs/FORMAT.md)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import PixzipError


def bits_for_levels(levels: int) -> int:
    """Bits per sub-pixel that hold values 0..levels-1 (0 for a single level: nothing to store)."""
    if not 1 <= levels <= 256:
        raise ValueError(f"levels {levels} outside 1..256")
    return (levels - 1).bit_length()


def stored_size(count: int, bits: int) -> int:
    """Bytes `count` sub-pixels take bit-packed at `bits` each."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Sub-pixels (any shape, uint8, each < 2**bits) as a bit string, most significant bit first, in
    C order; the last byte's unused low bits are zero."""
    if not 0 <= bits <= 8:
        raise ValueError(f"bits {bits} outside 0..8")
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    if bits < 8 and flat.size and int(flat.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    if bits == 0:
        return b""
    planes = np.unpackbits(flat[:, None], axis=1)[:, 8 - bits:]     # each value's low `bits` bits, MSB first
    return np.packbits(planes.reshape(-1)).tobytes()


def unpack_bits(data: bytes, shape: Sequence[int], bits: int) -> np.ndarray:
    """The exact inverse of pack_bits; PixzipError if the length or the padding bits are wrong."""
    if not 0 <= bits <= 8:
        raise PixzipError(f"stored plane: {bits} bits per sub-pixel")
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) != stored_size(count, bits):
        raise PixzipError("stored plane: wrong length")
    if bits == 0:
        return np.zeros(tuple(shape), np.uint8)
    stream = np.unpackbits(np.frombuffer(data, np.uint8))
    if stream[count * bits:].any():
        raise PixzipError("stored plane: padding bits are not zero")
    columns = np.zeros((count, 8), np.uint8)
    columns[:, 8 - bits:] = stream[:count * bits].reshape(count, bits)
    return np.packbits(columns, axis=1).reshape(tuple(shape))


def stored_pays(coded_bytes: int, count: int, bits: int, stored_overhead: int = 0) -> bool:
    """Store raw when it is strictly smaller than the coded stream (ties keep the coder)."""
    return stored_size(count, bits) + stored_overhead < coded_bytes


def levels_needed(plane: np.ndarray) -> int:
    """The level count a plane is stored at: its largest value + 1 (after Levels/Palette, its rank count)."""
    return int(plane.max()) + 1 if plane.size else 1
