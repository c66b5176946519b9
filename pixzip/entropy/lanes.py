"""Format v3's stream framing: a tile's K rANS lanes' final states, then the words their symbols'
renormalisations wrote (`pixzip.entropy.rans`)."""

from __future__ import annotations

import numpy as np

from ..formats.varint import Reader, varint
from .rans import LOW, WORD_BITS, WORD_MASK


def pack_states(states: np.ndarray) -> np.ndarray:
    """Final lane states as words: the high parts (x >> 32, < 2^24) as LEB128 varints (about 2 bytes
    where 3 would be fixed: the states' magnitudes are spread evenly on a log scale), lane by lane,
    zero-padded to whole words; then the low words. The decoder reads the low words as ordinary
    refills."""
    packed = b"".join(varint(high) for high in (states >> WORD_BITS).tolist())
    packed += bytes(-len(packed) % 4)
    return np.concatenate([np.frombuffer(bytes(packed), dtype="<u4"), states & WORD_MASK]).astype(np.uint32)


def unpack_states(words: np.ndarray, lanes: int) -> tuple[np.ndarray, int]:
    """Inverse of pack_states at the start of a stream: (states int64, words used). ValueError for a
    stream too short for them or with non-canonical varints or padding."""
    data = np.asarray(words[:4 * lanes + 4], dtype="<u4").tobytes()   # enough for any K varints
    r = Reader(data, lambda what: ValueError("stream too short for its lanes' states"))
    high = []
    for _ in range(lanes):
        start = r.pos
        value = r.varint(max_bits=28)                           # high parts < 2^24: 4 bytes at most
        if data[r.pos - 1] == 0 and r.pos - start > 1 or value >= LOW:   # a redundant zero byte, or too large
            raise ValueError("malformed lane state")
        high.append(value)
    pos = r.pos
    n_high = -(-pos // 4)
    if any(data[pos:4 * n_high]) or len(words) < n_high + lanes:
        raise ValueError("stream too short for its lanes' states")
    low = np.asarray(words[n_high:n_high + lanes], dtype=np.int64)
    return np.array(high, dtype=np.int64) << WORD_BITS | low, n_high + lanes
