"""Entropy coding of image planes with an integer model and constriction's range coder.

A plane (H, W, C) is cut into tiles; each tile is coded independently into its own stream, so tiles
can be decoded in any grouping (and, later, on several cores). Symbols are coded in the decoder's
order: wavefront t = j + s*i ascending, then channel (R, G, B), then row i. The encoder evaluates the
model once over every pixel of a batch of tiles; the decoder walks the wavefronts of a batch of tiles
together. Both call the same `IntPixelCNN.forward` and `frequencies`.
"""

from __future__ import annotations

from typing import Callable

import constriction
import numpy as np
import torch

from .engine import IntPixelCNN

# constriction quantises the (integer-valued) frequencies to its own fixed point deterministically;
# perfect=False is the leaky quantiser whose result is documented to be platform independent.
FAMILY = constriction.stream.model.Categorical(perfect=False)
CHUNK_SYMBOLS = 1 << 16
MAX_BATCH_PIXELS = 1 << 20     # tiles coded together at most; bounds memory, never changes the bits


def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) of each tile in raster order; tile=0 means one tile for the whole plane."""
    th = tile or height
    tw = tile or width
    return [(y, x, min(th, height - y), min(tw, width - x))
            for y in range(0, height, th) for x in range(0, width, tw)]


def _batches(tiles, max_pixels: int):
    """Group consecutive tiles so that a canvas (max size x count) stays under max_pixels."""
    batch = []
    for t in tiles:
        h = max([b[2] for b in batch] + [t[2]])
        w = max([b[3] for b in batch] + [t[3]])
        if batch and h * w * (len(batch) + 1) > max_pixels:
            yield batch
            batch = []
        batch.append(t)
    if batch:
        yield batch


def _coding_order(canvas, slope: int, channels: int, tile: int):
    """Flat canvas positions and channels of one tile's symbols, in coding order."""
    h, w = canvas.sizes[tile]
    i, j = np.divmod(np.arange(h * w), w)
    t = j + slope * i
    order = np.lexsort((i, t))                        # by t, then i
    i, j, t = i[order], j[order], t[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    ends = np.r_[starts[1:], len(t)]
    pix, chan = [], []
    for s, e in zip(starts, ends):                    # within a wavefront: channel-major
        for c in range(channels):
            pix.append(np.arange(s, e))
            chan.append(np.full(e - s, c))
    pix, chan = np.concatenate(pix), np.concatenate(chan)
    return i[pix], j[pix], chan


def encode_plane(model: IntPixelCNN, plane: np.ndarray, tile: int,
                 progress: Callable[[int], None] | None = None,
                 max_pixels: int = MAX_BATCH_PIXELS) -> tuple[list[np.ndarray], float]:
    """Code a uint8 plane (H, W, C) into one uint32 word array per tile.

    Also returns the model's ideal code length in bits (for reporting; never used for coding)."""
    H, W, C = plane.shape
    assert C == model.cfg.channels
    streams, ideal_bits = [], 0.0
    for batch in _batches(tile_grid(H, W, tile), max_pixels):
        canvas = model.new_canvas([(h, w) for _, _, h, w in batch])
        tiles, ii, jj = canvas.pixels()
        ys = np.array([b[0] for b in batch])[tiles] + ii
        xs = np.array([b[1] for b in batch])[tiles] + jj
        flat = canvas.flat(tiles, ii, jj)
        canvas.buf["img"][flat] = (torch.from_numpy(plane[ys, xs].astype(np.int16)) - 128).to(torch.int8)
        params = model.forward(canvas, flat, None)            # (n_pixels, C, D) for every pixel
        first = 0
        for n, (y0, x0, h, w) in enumerate(batch):
            i, j, c = _coding_order(canvas, model.slope, C, n)
            rows = first + i * w + j                           # canvas.pixels() is raster per tile
            symbols = plane[y0 + i, x0 + j, c].astype(np.int32)
            enc = constriction.stream.queue.RangeEncoder()
            for s in range(0, len(symbols), CHUNK_SYMBOLS):
                sl = slice(s, s + CHUNK_SYMBOLS)
                p = params[torch.from_numpy(rows[sl]), torch.from_numpy(c[sl])]
                freq = model.frequencies(p).numpy().astype(np.float64)
                enc.encode(symbols[sl], FAMILY, freq)
                hit = np.take_along_axis(freq, symbols[sl, None].astype(np.int64), axis=1)
                ideal_bits += float(np.sum(np.log2(freq.sum(axis=1)) - np.log2(hit[:, 0])))
            streams.append(enc.get_compressed())
            first += h * w
            if progress:
                progress(h * w)
    return streams, ideal_bits


def decode_plane(model: IntPixelCNN, height: int, width: int, tile: int, streams: list[np.ndarray],
                 progress: Callable[[int], None] | None = None,
                 max_pixels: int = MAX_BATCH_PIXELS) -> np.ndarray:
    """Inverse of encode_plane. Raises ValueError if the streams do not match the tile grid."""
    C = model.cfg.channels
    grid = tile_grid(height, width, tile)
    if len(streams) != len(grid):
        raise ValueError("stream count does not match the tile grid")
    out = np.zeros((height, width, C), dtype=np.uint8)
    k = 0
    for batch in _batches(grid, max_pixels):
        decoders = [constriction.stream.queue.RangeDecoder(streams[k + n]) for n in range(len(batch))]
        k += len(batch)
        canvas = model.new_canvas([(h, w) for _, _, h, w in batch])
        tiles, ii, jj = canvas.pixels()
        t = jj + model.slope * ii
        order = np.lexsort((ii, tiles, t))                    # by t, then tile, then i
        tiles, ii, jj, t = tiles[order], ii[order], jj[order], t[order]
        flat = canvas.flat(tiles, ii, jj)
        ys = np.array([b[0] for b in batch])[tiles] + ii
        xs = np.array([b[1] for b in batch])[tiles] + jj
        bounds = np.flatnonzero(np.r_[True, t[1:] != t[:-1], True])
        for s, e in zip(bounds[:-1], bounds[1:]):
            pos = flat[s:e]
            seg = np.flatnonzero(np.r_[True, tiles[s + 1:e] != tiles[s:e - 1], True])
            for c in range(C):
                params = model.forward(canvas, pos, c)[:, 0]
                freq = model.frequencies(params).numpy().astype(np.float64)
                vals = np.empty(e - s, dtype=np.int64)
                for a, b in zip(seg[:-1], seg[1:]):
                    vals[a:b] = decoders[tiles[s + a]].decode(FAMILY, freq[a:b])
                canvas.buf["img"][pos, c] = torch.from_numpy(vals - 128).to(torch.int8)
                out[ys[s:e], xs[s:e], c] = vals
            if progress:
                progress(e - s)
    return out

