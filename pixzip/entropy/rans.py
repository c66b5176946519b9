"""Interleaved rANS over many lanes at once, in vectorised int64 numpy (the coder of format version 3).

A *lane* is one rANS state with its own sequence of symbols. Symbols of different lanes are
independent, so one vectorised operation codes one symbol of every lane: the encoder walks all lanes
in lockstep (backwards, as rANS must), the decoder decodes one symbol for each of a set of distinct
lanes per call. Everything is integer arithmetic, so the result is the same on any machine; the coder
knows neither torch nor the models, only integer cumulative frequencies. It runs on the CPU (numpy)
wherever the network runs: its steps are many operations on short vectors, cheaper here than device
kernel launches.

State and words (docs/FORMAT.md, "version 3"): between symbols a state lies in [LOW, LOW << 32)
with LOW = 2^24 = 2^PRECISION; renormalisation moves exactly one 32-bit word when the state leaves that
range, so a decoding step reads at most one word and an encoding step writes at most one. A table of
cumulative frequencies C(0) = 0 < C(1) < ... < C(levels) = S with S <= 2^PRECISION (the engine's
tables: at most 256 entries of at most 2^16) is scaled to the coder's total 2^PRECISION as

    q(k) = floor(C(k) * 2^PRECISION / S)

which keeps every symbol's width >= 1 (the scale is >= 1) with no correction terms, so the decoder
finds the symbol of a slot by one search in C itself: q(k) <= slot  <=>  C(k) < bound(slot).

Where the words go (which lane reads which word when) is the caller's business (`backends.codec`): this
module reports, for every symbol, the word its renormalisation wrote, and decodes given the words read.
"""

from __future__ import annotations

import numpy as np

PRECISION = 24
LOW = 1 << PRECISION          # a state is in [LOW, LOW << WORD_BITS) between symbols
WORD_BITS = 32
WORD_MASK = (1 << WORD_BITS) - 1
SLOT_MASK = LOW - 1


def quantise(cum: np.ndarray, total: np.ndarray) -> np.ndarray:
    """q = floor(C * 2^PRECISION / S), int64 (C <= S <= 2^PRECISION: no overflow)."""
    return (cum << PRECISION) // total


def encode_lanes(lo: np.ndarray, freq: np.ndarray, lane: np.ndarray, n_lanes: int):
    """Code symbols given their quantised intervals [lo, lo + freq) and lanes; the symbols are in
    decoding order within each lane (their order among lanes does not matter).

    Returns (final state of each lane (n_lanes,), written (n,) bool: whether the symbol's
    renormalisation wrote a word, word (n,): that word). The decoder starts each lane from its final
    state and, after decoding a symbol that wrote a word, reads that word back."""
    n = len(lo)
    # lane by lane, decoding order kept (small keys sort by radix)
    order = np.argsort(lane.astype(np.uint16 if n_lanes <= 1 << 16 else np.int64), kind="stable")
    counts = np.bincount(lane, minlength=n_lanes)
    last = np.cumsum(counts) - 1                          # each lane's last symbol, in `order`
    lo, freq = lo[order], freq[order]
    written = np.zeros(n, dtype=bool)
    word = np.zeros(n, dtype=np.int64)
    x = np.full(n_lanes, LOW, dtype=np.int64)
    for m in range(int(counts.max()) if n else 0):       # backwards: step m codes each lane's m-th from last
        valid = counts > m
        at = np.where(valid, last - m, 0)
        x, wrote, w = _encode_step(x, lo[at], freq[at], valid)
        written[at[wrote]] = True
        word[at[wrote]] = w[wrote]
    out_written, out_word = np.empty(n, dtype=bool), np.empty(n, dtype=np.int64)
    out_written[order], out_word[order] = written, word
    return x, out_written, out_word


def _encode_step(x, lo, f, valid):
    """One symbol per lane (where `valid`): renormalise (write the low word if the state would
    outgrow its range), then x -> (x // f) << PRECISION + x % f + lo. Returns (x, wrote, words)."""
    wrote = (x >= (f << WORD_BITS)) & valid
    words = x & WORD_MASK
    x = np.where(wrote, x >> WORD_BITS, x)
    q, r = np.divmod(x, f)
    return np.where(valid, (q << PRECISION) + r + lo, x), wrote, words


def decode_step(x: np.ndarray, tables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One symbol for each of a set of distinct lanes: `x` their states, `tables` their cumulative
    frequencies (`total` (n,) and `locate(bound)` -> (k, C(k), C(k + 1)) for the last k with
    C(k) < bound). Returns (symbols, new states before reading, need: the lanes whose state fell below
    LOW and must read one word)."""
    slot = x & SLOT_MASK
    total = tables.total
    # q(k) <= slot  <=>  C(k) * 2^P < (slot + 1) * S  <=>  C(k) < ceil((slot + 1) * S / 2^P)
    symbols, below, upto = tables.locate(((slot + 1) * total + SLOT_MASK) >> PRECISION)
    lo = quantise(below, total)
    x = (quantise(upto, total) - lo) * (x >> PRECISION) + slot - lo
    return symbols, x, x < LOW


def refill(x: np.ndarray, need: np.ndarray, words: np.ndarray) -> np.ndarray:
    """x << 32 | word for the lanes that need it (words: one per lane, ignored where not needed)."""
    return np.where(need, (x << WORD_BITS) | words, x)
