"""16-bit samples: the significant bits' top 8 go through the models, the rest through a small coder
conditioned on them (format v4, docs/FORMAT.md "16-bit planes").

A 16-bit plane is first reduced by what is exactly free:
- REPLICATED: every sample is an 8-bit value times 257 (its low byte equals its high byte), the usual
  8 -> 16-bit conversion: the models code the high byte, nothing else is stored;
- SPLIT(k, s): every sample has k common trailing zero bits (e.g. 12-bit data shifted up by 4); the
  remaining value v' = v >> k has n significant bits; the models code its top 8 bits, v' >> s with
  s = max(0, n - 8), and the low s bits are coded here.

The low part is coded after the whole high plane is known, so its context may look at every
neighbour's high value, both sides: the 3x3 mean of the high plane predicts where in its bin a value
lies (a gradient runs through the bins), the residual modulo 2^s is coded with a frequency table chosen
by the channel and the 3x3 range of the high values (flat regions are predictable, busy ones are
noise). The tables are counted on the image and stored in the stream (each only where it pays for
itself); the symbols go through interleaved rANS lanes (pixzip.rans), all lanes decoded together: the
decode is a few thousand vectorised steps, whatever the image's size. Integer arithmetic only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import rans
from .errors import PixzipError

REPLICATED, SPLIT = 1, 0
CONTEXTS = 4                     # 3x3 range of the high values: 0, 1, 2, 3 or more
SYMBOLS_PER_LANE = 8192          # lanes decode in lockstep: fewer, longer lanes cost less header
TABLE_TOTAL = 1 << 12            # stored tables are scaled to at most this total (each count >= 1)


@dataclass
class Split:
    """How a 16-bit plane was reduced: kind, shift k (trailing zero bits), low bits s."""
    kind: int
    shift: int = 0
    low_bits: int = 0

    def to_bytes(self) -> bytes:
        return bytes([self.kind, self.shift, self.low_bits])


def choose_split(plane: np.ndarray) -> Split:
    """The cheapest exact reduction of a uint16 plane (see the module docstring)."""
    v = plane.astype(np.uint32)
    if np.array_equal(v >> 8, v & 0xFF):
        return Split(REPLICATED)
    union = int(np.bitwise_or.reduce(v, axis=None)) if v.size else 0
    shift = (union & -union).bit_length() - 1 if union else 0
    bits = (union >> shift).bit_length()
    return Split(SPLIT, shift, max(0, bits - 8))


def high_and_low(plane: np.ndarray, split: Split) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 plane for the models, low part (uint8, s bits) or None)."""
    v = plane.astype(np.uint32)
    if split.kind == REPLICATED:
        return (v >> 8).astype(np.uint8), None
    v >>= split.shift
    high = (v >> split.low_bits).astype(np.uint8)
    return high, ((v & ((1 << split.low_bits) - 1)).astype(np.uint8) if split.low_bits else None)


def join(high: np.ndarray, low: np.ndarray | None, split: Split) -> np.ndarray:
    v = high.astype(np.uint32)
    if split.kind == REPLICATED:
        return (v * 257).astype(np.uint16)
    if split.low_bits:
        v = (v << split.low_bits) | low
    return (v << split.shift).astype(np.uint16)


def check_split(raw: bytes) -> Split:
    kind, shift, low_bits = raw
    # SPLIT: n = s + 8 significant bits above k zero bits fill at most 16 (s = 0: the high part alone)
    if kind not in (REPLICATED, SPLIT) or shift > 15 or (low_bits and shift + low_bits > 8) or \
            (kind == REPLICATED and (shift or low_bits)):
        raise ValueError("bad 16-bit split")
    return Split(kind, shift, low_bits)


# -- contexts -----------------------------------------------------------------------------------------
def _contexts(high: np.ndarray, low_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (flattened row, column, channel): the predicted low part and the table index
    (channel * CONTEXTS + activity), from the high plane alone."""
    h, w, c = high.shape
    p = np.pad(high.astype(np.int32), ((1, 1), (1, 1), (0, 0)), mode="edge")
    windows = [p[i:i + h, j:j + w] for i in range(3) for j in range(3)]
    total = sum(windows)
    activity = np.minimum(np.maximum.reduce(windows) - np.minimum.reduce(windows), CONTEXTS - 1)
    # the 3x3 mean's place inside the centre's bin: ((mean + 1/2) << s) - (centre << s)
    scale = 1 << low_bits
    predicted = (total * scale + 9 * (scale >> 1)) // 9 - high.astype(np.int32) * scale
    predicted = np.clip(predicted, 0, scale - 1)
    table = np.arange(c, dtype=np.int32) * CONTEXTS + activity
    return predicted.reshape(-1), table.reshape(-1)


def _scaled_table(counts: np.ndarray) -> np.ndarray:
    """Counts scaled to a total of at most TABLE_TOTAL, each >= 1."""
    total = int(counts.sum())
    if total <= TABLE_TOTAL - len(counts):
        return counts + 1
    return (counts * (TABLE_TOTAL - len(counts))) // total + 1


def _cost_bits(counts: np.ndarray, table: np.ndarray) -> float:
    return float(-(counts * np.log2(table / table.sum())).sum())


# -- the stream ---------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode(high: np.ndarray, low: np.ndarray, low_bits: int) -> np.ndarray:
    """The low part's stream (uint32 words): tables, lane states, then every lane's words."""
    levels = 1 << low_bits
    predicted, table_of = _contexts(high, low_bits)
    symbols = (low.reshape(-1).astype(np.int32) - predicted) & (levels - 1)
    n_tables = high.shape[2] * CONTEXTS
    head = bytearray()
    tables = []
    for t in range(n_tables):
        counts = np.bincount(symbols[table_of == t], minlength=levels).astype(np.int64)
        stored = _scaled_table(counts)
        size_bits = 8 * len(b"".join(_varint(int(x)) for x in stored))
        if counts.sum() and _cost_bits(counts, stored) + size_bits < low_bits * counts.sum():
            head.append(1)
            head += b"".join(_varint(int(x)) for x in stored)
            tables.append(stored)
        else:
            head.append(0)
            tables.append(np.ones(levels, dtype=np.int64))
    cum = np.stack([np.concatenate([[0], np.cumsum(t)]) for t in tables])
    n = len(symbols)
    n_lanes = max(1, -(-n // SYMBOLS_PER_LANE))
    lane = np.arange(n) // SYMBOLS_PER_LANE
    total = cum[table_of, -1]
    lo = rans.quantise(cum[table_of, symbols], total)
    freq = rans.quantise(cum[table_of, symbols + 1], total) - lo
    states, written, words = rans.encode_lanes(lo, freq, lane, n_lanes)
    head = _varint(n_lanes) + head
    for j in range(n_lanes):
        head += struct.pack("<Q", int(states[j])) + _varint(int(written[lane == j].sum()))
    head += b"\x00" * (-len(head) % 4)
    return np.concatenate([np.frombuffer(bytes(head), dtype="<u4"),
                           words[written].astype(np.uint32)]).astype(np.uint32)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("stream too short")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 63, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ValueError("varint too long")


class _Tables:
    """rans.decode_step's view of the stored tables: symbol of a cumulative bound by lookup."""

    def __init__(self, cum: np.ndarray):
        self.cum = cum
        width = int(cum[:, -1].max())
        # inverse[t, c] = the symbol k with C(k) <= c < C(k + 1)
        self.inverse = np.stack([np.repeat(np.arange(cum.shape[1] - 1), np.diff(row)).tolist() +
                                 [0] * (width - int(row[-1])) for row in cum]).astype(np.int64)
        self.which = None

    @property
    def total(self):
        return self.cum[self.which, -1]

    def locate(self, bound):
        k = self.inverse[self.which, bound - 1]
        return k, self.cum[self.which, k], self.cum[self.which, k + 1]


def decode(stream: np.ndarray, high: np.ndarray, low_bits: int) -> np.ndarray:
    """Inverse of `encode`; ValueError on any inconsistency (the caller reports corruption)."""
    levels = 1 << low_bits
    predicted, table_of = _contexts(high, low_bits)
    n = len(predicted)
    r = _Reader(stream.astype("<u4").tobytes())
    n_lanes = r.varint()
    if n_lanes != max(1, -(-n // SYMBOLS_PER_LANE)):
        raise ValueError("lane count")
    tables = []
    for _ in range(high.shape[2] * CONTEXTS):
        flag = r.take(1)[0]
        if flag > 1:
            raise ValueError("table flag")
        t = np.array([r.varint() for _ in range(levels)], dtype=np.int64) if flag else np.ones(levels, np.int64)
        if t.min() < 1 or t.sum() > TABLE_TOTAL:
            raise ValueError("table")
        tables.append(t)
    cum = np.stack([np.concatenate([[0], np.cumsum(t)]) for t in tables])
    states = np.zeros(n_lanes, dtype=np.int64)
    counts = np.zeros(n_lanes, dtype=np.int64)
    for j in range(n_lanes):
        states[j] = struct.unpack("<Q", r.take(8))[0]
        counts[j] = r.varint()
    if r.data[r.pos:r.pos + (-r.pos % 4)].strip(b"\x00") or not (states < (rans.LOW << 32)).all():
        raise ValueError("lane states")
    words = stream[(r.pos + 3) // 4:].astype(np.int64)
    if counts.sum() != len(words) or (states < rans.LOW).any():
        raise ValueError("word count")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    used = np.zeros(n_lanes, dtype=np.int64)
    lookup = _Tables(cum)
    out = np.zeros(n, dtype=np.int64)
    lengths = np.minimum(SYMBOLS_PER_LANE, n - np.arange(n_lanes) * SYMBOLS_PER_LANE)
    for step in range(int(lengths.max())):
        active = np.nonzero(lengths > step)[0]
        where = active * SYMBOLS_PER_LANE + step
        lookup.which = table_of[where]
        sym, x, need = rans.decode_step(states[active], lookup)
        fetch = need & (used[active] < counts[active])
        if (need & ~fetch).any():
            raise ValueError("stream too short")
        word = words[np.where(fetch, start[active] + used[active], 0)] if len(words) else np.zeros_like(x)
        states[active] = rans.refill(x, fetch, word)
        used[active] += fetch
        out[where] = sym
    if (used != counts).any() or (states != rans.LOW).any():
        raise ValueError("lanes do not end where they started")
    low = (out + predicted) & (levels - 1)
    return low.astype(np.uint8).reshape(high.shape)
