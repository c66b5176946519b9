"""Formats v1-v2: constriction's range coder, one call and one set of tables per tile and chunk."""

from __future__ import annotations

import constriction
import numpy as np
import torch

# constriction quantises the (integer-valued) frequencies to its own fixed point deterministically;
# perfect=False is the leaky quantiser whose result is documented to be platform independent.
FAMILY = constriction.stream.model.Categorical(perfect=False)
CHUNK_SYMBOLS = 1 << 12       # symbols per call to the coder: their tables (8 MB) stay in the cache


def chunks(symbols: np.ndarray, params: torch.Tensor):
    """A tile's symbols and head outputs in the coder's chunks of CHUNK_SYMBOLS."""
    for s in range(0, len(symbols), CHUNK_SYMBOLS):
        yield symbols[s:s + CHUNK_SYMBOLS], params[s:s + CHUNK_SYMBOLS]


def encode_tile(model, symbols: np.ndarray, params: torch.Tensor) -> tuple[np.ndarray, float]:
    """One tile's stream from its symbols and head outputs, and its ideal length in bits (for
    reporting). The tables are made on the CPU, as the decoder makes them."""
    enc, bits = constriction.stream.queue.RangeEncoder(), 0.0
    for sym, p in chunks(symbols, params):
        freq = model.frequencies(p, torch.float64)
        enc.encode(sym, FAMILY, freq.numpy())
        bits += float(np.sum(model.code_lengths(p, sym, freq)))
    return enc.get_compressed(), bits


def tile_decoders(streams: dict):
    """choose(key, freq, where) for the wavefront decoder: each tile's symbols from its own stream."""
    decoders = {key: constriction.stream.queue.RangeDecoder(s) for key, s in streams.items()}

    def choose(key, freq, where):
        try:
            return decoders[key].decode(FAMILY, freq.numpy())
        except AssertionError:      # constriction's word for "this stream is not a valid range code"
            raise ValueError("undecodable range-coded stream") from None

    return choose
