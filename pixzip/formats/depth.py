"""16-bit planes, exactly reduced before coding (format v4, docs/FORMAT.md "16-bit planes"): the split
record a container carries per plane and the exact maps between a uint16 plane and its parts (the high
8 bits the models code, the low bits `pixzip.entropy.lowbits` codes). Numpy only.

- REPLICATED: every sample is an 8-bit value times 257 (the usual 8 -> 16-bit conversion): the models
  code the high byte, nothing else is stored;
- SPLIT(k, s): every sample has k common trailing zero bits; the remaining value v' = v >> k has n
  significant bits; the models code its top 8 bits, v' >> s with s = max(0, n - 8), the low s bits apart;
- RANKED(s): the plane uses few distinct values (data of a lower depth scaled by any factor): the
  sorted list is stored and each sample is replaced by its rank (order-preserving), split as above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .varint import varint as _varint

REPLICATED, SPLIT, RANKED = 1, 0, 2
MAX_RANKED_VALUES = 1 << 14       # bounds the header's value list


@dataclass
class Split:
    """How a 16-bit plane was reduced: kind, shift k (trailing zero bits), low bits s, and for RANKED the
    sorted distinct values."""
    kind: int
    shift: int = 0
    low_bits: int = 0
    values: np.ndarray | None = None

    def __eq__(self, other):
        return (self.kind, self.shift, self.low_bits) == (other.kind, other.shift, other.low_bits) and \
            np.array_equal(self.values if self.values is not None else [], other.values if other.values is not None else [])

    def to_bytes(self) -> bytes:
        out = bytes([self.kind, self.shift, self.low_bits])
        if self.kind == RANKED:      # the values as gaps: first value, then each step minus one
            gaps = np.diff(self.values.astype(np.int64), prepend=-1) - 1
            out += _varint(len(self.values)) + b"".join(_varint(int(g)) for g in gaps)
        return out


def describe(split: Split) -> str:
    """For `pixzip info`: how the plane's samples were split."""
    if split.kind == REPLICATED:
        return "8-bit values x 257 (no low part)"
    what = f"ranks of {len(split.values)} values" if split.kind == RANKED else \
        f"{split.shift} zero low bits" if split.shift else "samples"
    return f"{what}, low {split.low_bits} bits coded apart"


def read_split(reader) -> Split:
    """A split record from the container's reader; ValueError if inconsistent."""
    kind, shift, low_bits = reader.u8(), reader.u8(), reader.u8()
    values = None
    if kind == RANKED:
        count = reader.varint()
        if not 1 <= count <= MAX_RANKED_VALUES:
            raise ValueError("bad value count")
        values = np.cumsum(np.array([reader.varint() for _ in range(count)], dtype=np.int64) + 1) - 1
        if values[-1] > 0xFFFF or low_bits != max(0, (count - 1).bit_length() - 8) or shift:
            raise ValueError("bad value list")
    # SPLIT: n = s + 8 significant bits above k zero bits fill at most 16 (s = 0: the high part alone)
    if kind not in (REPLICATED, SPLIT, RANKED) or shift > 15 or (low_bits and shift + low_bits > 8) or \
            (kind == REPLICATED and (shift or low_bits)):
        raise ValueError("bad 16-bit split")
    return Split(kind, shift, low_bits, values)


def choose_split(plane: np.ndarray) -> Split:
    """The cheapest exact reduction of a uint16 plane (see the module docstring)."""
    v = plane.astype(np.uint32)
    if np.array_equal(v >> 8, v & 0xFF):
        return Split(REPLICATED)
    union = int(np.bitwise_or.reduce(v, axis=None)) if v.size else 0
    shift = (union & -union).bit_length() - 1 if union else 0
    bits = (union >> shift).bit_length()
    values = np.unique(v)
    rank_bits = (len(values) - 1).bit_length()
    # ranks pay when they drop at least 2 bits a sample and the value list costs under 1 bit a sample
    if rank_bits + 2 <= bits and len(values) <= MAX_RANKED_VALUES and 16 * len(values) <= v.size:
        return Split(RANKED, 0, max(0, rank_bits - 8), values.astype(np.uint16))
    return Split(SPLIT, shift, max(0, bits - 8))


def high_and_low(plane: np.ndarray, split: Split) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 plane for the models, low part (uint8, s bits) or None)."""
    v = plane.astype(np.uint32)
    if split.kind == REPLICATED:
        return (v >> 8).astype(np.uint8), None
    v = np.searchsorted(split.values, v).astype(np.uint32) if split.kind == RANKED else v >> split.shift
    high = (v >> split.low_bits).astype(np.uint8)
    return high, ((v & ((1 << split.low_bits) - 1)).astype(np.uint8) if split.low_bits else None)


def join(high: np.ndarray, low: np.ndarray | None, split: Split) -> np.ndarray:
    """Inverse of high_and_low; ValueError if a rank is beyond the value list (corruption)."""
    v = high.astype(np.uint32)
    if split.kind == REPLICATED:
        return (v * 257).astype(np.uint16)
    if split.low_bits:
        v = (v << split.low_bits) | low
    if split.kind == RANKED:
        if v.max(initial=0) >= len(split.values):
            raise ValueError("rank beyond the value list")
        return split.values[v].astype(np.uint16)
    return (v << split.shift).astype(np.uint16)


