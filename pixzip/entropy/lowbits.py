"""16-bit samples: the significant bits' top 8 go through the models, the rest through a small coder
conditioned on them (format v4, docs/FORMAT.md "16-bit planes").

A 16-bit plane is first reduced by what is exactly free:
- REPLICATED: every sample is an 8-bit value times 257 (its low byte equals its high byte), the usual
  8 -> 16-bit conversion: the models code the high byte, nothing else is stored;
- SPLIT(k, s): every sample has k common trailing zero bits (e.g. 12-bit data shifted up by 4); the
  remaining value v' = v >> k has n significant bits; the models code its top 8 bits, v' >> s with
  s = max(0, n - 8), and the low s bits are coded here;
- RANKED(s): the plane uses few distinct values (data of a lower depth scaled by any factor, e.g. 12-bit
  samples times 65535/4095): the sorted list of them is stored and each sample is replaced by its rank
  (an order-preserving map, so neighbours stay alike), split as above.

The low part is coded after the whole high plane is known. Each value is predicted at full precision
from its already decoded neighbours (LOCO-I's median predictor over W, N, NW; from the second channel
on, plus the previous channel's prediction error at the same pixel) and the prediction is clamped
into the value's known bin [h << s, (h + 1) << s): the high plane tells where the value lies, the
neighbours where inside. The low part's offset from the clamped prediction, modulo 2^s, is coded
with a frequency table chosen by the channel and the local gradient |W - NW| + |N - NW| (bit length),
and in layout 2 (session 24) also by where the prediction fell against the bin (_position: clamped to an
edge, it says the value lies near that edge), counted on the image and stored in the stream (each table
only where it pays for itself; the encoder keeps the smaller layout). Symbols go
through interleaved rANS lanes (pixzip.rans), one lane per row and channel, decoded by anti-diagonal
wavefronts (pixel (i, j) needs only W, N and NW): H + W - 1 vectorised steps, whatever the size.
Integer arithmetic only.
"""

from __future__ import annotations

import struct

import numpy as np

from . import rans
from ..formats.varint import Reader, varint as _varint

CONTEXTS = 10                    # bit length of the local gradient, 0..9 (9: 256 or more)
POSITIONS = 5                    # where the prediction fell against the value's bin (_position), layout 2 only
LAYOUT_POSITIONS = 2             # a stream's first byte that names layout 2 (layout 1 starts with a table flag, 0 or 1)
ENCODE_BAND = 1 << 20            # samples predicted at once when encoding (bounds the temporaries)
TABLE_TOTAL = 1 << 12            # stored tables are scaled to at most this total (each count >= 1)


# -- prediction -------------------------------------------------------------------------------------
def _median(x: np.ndarray, high: np.ndarray, low_bits: int, i: np.ndarray, j: np.ndarray):
    """For pixels (i, j), every channel: LOCO-I's median of x's W, N, NW (decoded before (i, j) in any
    wavefront order), the bin's base (high << s) and the table index (channel, gradient). Borders: no
    W -> N; no N -> W; neither -> the centre of the pixel's own bin; no NW -> N."""
    base = high[i, j].astype(np.int64) << low_bits
    centre = base + (1 << (low_bits - 1))
    has_w, has_n = (j > 0)[:, None], (i > 0)[:, None]
    w = x[i, np.maximum(j - 1, 0)]
    n = x[np.maximum(i - 1, 0), j]
    nw = x[np.maximum(i - 1, 0), np.maximum(j - 1, 0)]
    w, n = np.where(has_w, w, np.where(has_n, n, centre)), np.where(has_n, n, np.where(has_w, w, centre))
    nw = np.where(has_w & has_n, nw, n)
    lo, hi = np.minimum(w, n), np.maximum(w, n)
    median = np.where(nw >= hi, lo, np.where(nw <= lo, hi, w + n - nw))
    gradient = np.abs(w - nw) + np.abs(n - nw)
    table = np.arange(x.shape[2]) * CONTEXTS + np.minimum(_bit_length(gradient), CONTEXTS - 1)
    return median, base, table


def _position(prediction: np.ndarray, base: np.ndarray, low_bits: int) -> np.ndarray:
    """Where a full-precision prediction fell against the value's bin [base, base + 2^s), in 5 classes: more than one
    below it, one below or at its first value, inside, at its last value, past it. Clamped to an edge, the
    prediction says the value lies near that edge: its offset's law differs from the inside's (layout 2's tables)."""
    d = prediction - base
    top = (1 << low_bits) - 1
    return np.where(d < -1, 0, np.where(d <= 0, 1, np.where(d < top, 2, np.where(d == top, 3, 4))))


def _in_bin(prediction: np.ndarray, base: np.ndarray, low_bits: int) -> np.ndarray:
    """A full-precision prediction as a low part: clamped into the bin the high plane gives."""
    return np.clip(prediction - base, 0, (1 << low_bits) - 1)


def _bit_length(v: np.ndarray) -> np.ndarray:
    out = np.zeros(v.shape, dtype=np.int64)
    for b in range(17):
        out += v >= (1 << b)
    return out


def _scaled_table(counts: np.ndarray) -> np.ndarray:
    """Counts scaled to a total of at most TABLE_TOTAL, each >= 1."""
    total = int(counts.sum())
    if total <= TABLE_TOTAL - len(counts):
        return counts + 1
    return (counts * (TABLE_TOTAL - len(counts))) // total + 1


def _cost_bits(counts: np.ndarray, table: np.ndarray) -> float:
    return float(-(counts * np.log2(table / table.sum())).sum())


# -- the stream ---------------------------------------------------------------------------------------

def encode(high: np.ndarray, low: np.ndarray, low_bits: int, layouts: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """The low part's stream (uint32 words): in each of `layouts` (1: a table per channel and gradient; 2: per
    channel, gradient and the prediction's position against the bin, after a leading byte 2), the smallest kept
    (ties: the first). Layout 2's five times as many tables pay on large images, layout 1's fewer on small ones."""
    symbols, table_of, position = _symbols(high, low, low_bits)
    h, w, c = high.shape
    lane = np.repeat(np.arange(h * w) // w, c) * c + np.tile(np.arange(c), h * w)    # one lane per row and channel
    streams = [_stream(symbols, table_of if layout == 1 else table_of * POSITIONS + position,
                       c * CONTEXTS * (1 if layout == 1 else POSITIONS), low_bits, lane, h * c,
                       b"" if layout == 1 else bytes([LAYOUT_POSITIONS])) for layout in layouts]
    return min(streams, key=len)


def _symbols(high: np.ndarray, low: np.ndarray, low_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample in raster order (row, column, channel): the coded symbol, layout 1's table and the prediction's
    position (_position)."""
    levels = 1 << low_bits
    h, w, c = high.shape
    x = (high.astype(np.int32) << low_bits) | low
    symbols = np.empty(h * w * c, dtype=np.int64)
    table_of = np.empty(h * w * c, dtype=np.int64)
    position = np.empty(h * w * c, dtype=np.int64)
    band = max(1, ENCODE_BAND // max(w * c, 1))
    for top in range(0, h, band):         # every value is known: predict bands of rows at once
        rows = slice(top * w * c, min(h, top + band) * w * c)
        i, j = np.divmod(np.arange(top * w, min(h, top + band) * w), w)
        median, base, table = _median(x, high, low_bits, i, j)
        # a channel's prediction adds the previous channel's error at the same pixel (colour
        # channels' fine detail moves together)
        prediction = median.copy()
        prediction[:, 1:] += x[i, j][:, :-1] - median[:, :-1]
        predicted = _in_bin(prediction, base, low_bits)
        symbols[rows] = ((low[i, j].astype(np.int64) - predicted) & (levels - 1)).reshape(-1)
        table_of[rows] = table.reshape(-1)
        position[rows] = _position(prediction, base, low_bits).reshape(-1)
    return symbols, table_of, position


def _stream(symbols: np.ndarray, table_of: np.ndarray, n_tables: int, low_bits: int, lane: np.ndarray, n_lanes: int,
            lead: bytes) -> np.ndarray:
    """The stream's words: `lead`, the tables (each stored only where it pays for itself), the `n_lanes` lanes'
    states (`lane`: each sample's), their words."""
    levels = 1 << low_bits
    head = bytearray(lead)
    tables = []
    for t in range(n_tables):
        counts = np.bincount(symbols[table_of == t], minlength=levels).astype(np.int64)
        stored = _scaled_table(counts)
        size_bits = 8 * len(b"".join(_varint(int(v)) for v in stored))
        if counts.sum() and _cost_bits(counts, stored) + size_bits < low_bits * counts.sum():
            head.append(1)
            head += b"".join(_varint(int(v)) for v in stored)
            tables.append(stored)
        else:
            head.append(0)
            tables.append(np.ones(levels, dtype=np.int64))
    cum = np.stack([np.concatenate([[0], np.cumsum(t)]) for t in tables])
    total = cum[table_of, -1]
    lo = rans.quantise(cum[table_of, symbols], total)
    freq = rans.quantise(cum[table_of, symbols + 1], total) - lo
    states, written, words = rans.encode_lanes(lo, freq, lane, n_lanes)
    per_lane = np.bincount(lane[written], minlength=n_lanes)
    for j_lane in range(n_lanes):
        head += struct.pack("<Q", int(states[j_lane])) + _varint(int(per_lane[j_lane]))
    head += b"\x00" * (-len(head) % 4)
    order = np.argsort(lane[written], kind="stable")                # words lane by lane, in decoding order
    return np.concatenate([np.frombuffer(bytes(head), dtype="<u4"),
                           words[written][order].astype(np.uint32)]).astype(np.uint32)


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
    """Inverse of `encode`, wavefront by wavefront; ValueError on any inconsistency (the caller reports
    corruption)."""
    levels = 1 << low_bits
    h, w, c = high.shape
    r = Reader(stream.astype("<u4").tobytes(), ValueError)
    positions = r.data[:1] == bytes([LAYOUT_POSITIONS])      # layout 2 (layout 1 starts with a flag, 0 or 1)
    if positions:
        r.take(1)
    tables = []
    for _ in range(c * CONTEXTS * (POSITIONS if positions else 1)):
        flag = r.take(1)[0]
        if flag > 1:
            raise ValueError("table flag")
        t = np.array([r.varint() for _ in range(levels)], dtype=np.int64) if flag else np.ones(levels, np.int64)
        if t.min() < 1 or t.sum() > TABLE_TOTAL:
            raise ValueError("table")
        tables.append(t)
    cum = np.stack([np.concatenate([[0], np.cumsum(t)]) for t in tables])
    n_lanes = h * c
    states = np.zeros(n_lanes, dtype=np.int64)
    counts = np.zeros(n_lanes, dtype=np.int64)
    for lane in range(n_lanes):
        states[lane] = struct.unpack("<Q", r.take(8))[0]
        counts[lane] = r.varint()
    if r.data[r.pos:r.pos + (-r.pos % 4)].strip(b"\x00") or (states >= rans.LOW << 32).any() or \
            (states < rans.LOW).any():
        raise ValueError("lane states")
    words = stream[(r.pos + 3) // 4:].astype(np.int64)
    if counts.sum() != len(words):
        raise ValueError("word count")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    used = np.zeros(n_lanes, dtype=np.int64)
    lookup = _Tables(cum)
    x = np.zeros((h, w, c), dtype=np.int32)
    for t in range(h + w - 1):                          # anti-diagonal i + j = t
        i = np.arange(max(0, t - w + 1), min(h, t + 1))
        j = t - i
        median, base, table = _median(x, high, low_bits, i, j)
        error = 0
        for ch in range(c):                              # channels in order: each needs the one before
            predicted = _in_bin(median[:, ch] + error, base[:, ch], low_bits)
            lanes = i * c + ch
            lookup.which = (table[:, ch] * POSITIONS + _position(median[:, ch] + error, base[:, ch], low_bits)
                            if positions else table[:, ch])
            sym, state, need = rans.decode_step(states[lanes], lookup)
            if (need & (used[lanes] >= counts[lanes])).any():
                raise ValueError("stream too short")
            word = words[np.where(need, start[lanes] + used[lanes], 0)] if len(words) else np.zeros_like(state)
            states[lanes] = rans.refill(state, need, word)
            used[lanes] += need
            value = base[:, ch] + ((sym + predicted) & (levels - 1))
            x[i, j, ch] = value
            error = value - median[:, ch]
    if (used != counts).any() or (states != rans.LOW).any():
        raise ValueError("lanes do not end where they started")
    return (x & (levels - 1)).astype(np.uint8)
