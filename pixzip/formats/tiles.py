"""The tile grid and the coding order: how a plane's pixels become a container's streams.

A plane (H, W, C) is cut into tiles; each tile is coded independently into its own stream, so tiles can
be decoded in any grouping (and on several cores). Symbols are coded in the decoder's order: wavefront
t = j + s*i ascending, then channel (R, G, B), then row i. Format v3 gives every tile a few rANS lanes
(row i is lane i % K) so that a decoding sub-step takes at most PASSES vectorised steps."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PASSES = 8                    # v3: at most this many vectorised rANS steps per decoding sub-step


def lanes_per_tile(height: int, width: int, slope: int) -> int:
    """Format v3: the rANS lanes (states) of a tile, K. A sub-step (one wavefront, one channel) codes
    one pixel of each of at most `widest` consecutive rows; with row i in lane i % K, no lane has more
    than PASSES of them, so a sub-step decodes in at most PASSES vectorised steps. Each lane costs
    about 35 bits of state, so K is no larger than that needs."""
    widest = min(height, (width - 1) // slope + 1)
    return -(-widest // PASSES)


def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) of each tile in raster order; tile=0 means one tile for the whole plane."""
    th = tile or height
    tw = tile or width
    return [(y, x, min(th, height - y), min(tw, width - x))
            for y in range(0, height, th) for x in range(0, width, tw)]


@lru_cache(maxsize=64)
def coding_order(h: int, w: int, slope: int, channels: int):
    """Rows i, columns j and channels of an (h, w) tile's symbols, in coding order: by wavefront
    t = j + slope * i, then channel, then row (cached, read-only: tiles share a few sizes)."""
    i, j = np.divmod(np.arange(h * w), w)
    i, j = np.repeat(i, channels), np.repeat(j, channels)
    c = np.tile(np.arange(channels), h * w)
    order = np.lexsort((i, c, j + slope * i))
    return i[order], j[order], c[order]


def crop(plane: np.ndarray, tile: tuple[int, int, int, int]) -> np.ndarray:
    y, x, h, w = tile
    return np.ascontiguousarray(plane[y:y + h, x:x + w])


def small_part(small: np.ndarray, y: int, x: int, h: int, w: int, s: int) -> np.ndarray:
    """The subsampled pixels of the full-resolution region (y, x, h, w); y and x are multiples of s."""
    return small[y // s:-(-(y + h) // s), x // s:-(-(x + w) // s)]


def assemble(height, width, channels, grid, parts: dict, key) -> np.ndarray:
    """A plane from its decoded tiles: `parts[key(n)]` is tile n of `grid`."""
    plane = np.zeros((height, width, channels), dtype=np.uint8)
    for n, (y, x, h, w) in enumerate(grid):
        plane[y:y + h, x:x + w] = parts[key(n)]
    return plane
