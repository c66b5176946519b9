"""The reference backend, in torch and numpy on any device: the encoder's pass over batches of tiles
(the network once over every pixel, all channel groups at once), format v3's rANS lanes coded in
lockstep, and the decoder's per-sub-step symbol choice (`LaneDecoder` for v3, `PerTile` for the range
coder and samplers). The native coder and the GPU path are checked against it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch

from ..entropy import rans, range_coder
from ..entropy.lanes import pack_states, unpack_states
from ..formats.tiles import coding_order, lanes_per_tile, small_part, tile_grid
from ..nets.base import IntModel
from ..nets.pixelcnn import IntPixelCNN
from . import native


@contextmanager
def one_thread():
    """The decoder's steps are many small ops: intra-op threads cost more than they give (measured 12 vs
    44 us for a 300x240x16 int8 product). Parallelism belongs across tiles instead."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def batches(tiles, max_pixels: int, first: int = 0):
    """Group consecutive tiles so that a canvas (max size x count) stays under max_pixels.
    Tiles are tuples whose (y, x, h, w) start at index `first`."""
    batch = []
    for t in tiles:
        h = max([b[first + 2] for b in batch] + [t[first + 2]])
        w = max([b[first + 3] for b in batch] + [t[first + 3]])
        if batch and h * w * (len(batch) + 1) > max_pixels:
            yield batch
            batch = []
        batch.append(t)
    if batch:
        yield batch


def load_batch(model: IntModel, batch, planes: list[np.ndarray] | None, conds: dict | None = None):
    """A canvas for a batch of tiles (plane, y, x, h, w), its pixels (tile, i, j) and their flat
    positions; with `planes`, the image buffer is filled from them; with `conds` ({plane: subsampled
    plane}, conditional models), each tile's conditioning map."""
    canvas = model.new_canvas([(h, w) for _, _, _, h, w in batch])
    tiles, ii, jj = canvas.pixels()
    flat = canvas.flat(tiles, ii, jj)
    if planes is not None:    # canvas.pixels() runs tile by tile in raster order: each tile is a block
        values = np.concatenate([planes[k][y0:y0 + h, x0:x0 + w].reshape(h * w, -1)
                                 for k, y0, x0, h, w in batch])
        img = torch.from_numpy((values.astype(np.int16) - 128).astype(np.int8)).to(canvas.device)
        canvas.buf["img"].index_copy_(0, flat, img)
    for n, (k, y0, x0, h, w) in enumerate(batch):
        if conds is not None:
            model.condition(canvas, n, small_part(conds[k], y0, x0, h, w, model.cfg.scale))
    return canvas, flat


def encoder_tables(model: IntModel, planes: list[np.ndarray], tile: int,
                   max_pixels: int, dtype: torch.dtype = torch.int32,
                   conds: list[np.ndarray] | None = None, in_native: bool = False):
    """Yield ((plane, tile number), symbols, head outputs, frequency tables) chunk by chunk, in coding
    order.

    The model runs once over every pixel of a batch of tiles, which may come from several planes
    (images), all channel groups at once. A conditional model also takes each plane's subsampled
    plane (`conds`). `in_native`: the head outputs come from the native coder's walk."""
    for key, symbols, params in tile_symbols(model, planes, tile, max_pixels, conds, in_native):
        for sym, p in range_coder.chunks(symbols, params):
            yield key, sym, p, model.frequencies(p, dtype)


class TileSymbols(NamedTuple):
    key: tuple[int, int]          # (plane, tile number)
    symbols: np.ndarray           # int64, in coding order
    params: torch.Tensor          # head outputs (n, D) on the model's device, same order
    rows: np.ndarray              # each symbol's row i in its tile
    shape: tuple[int, int]        # the tile's (h, w)


def batch_symbols(model: IntModel, planes: list[np.ndarray], tile: int, max_pixels: int,
                  conds: list[np.ndarray] | None = None, in_native: bool = False):
    """Yield, per batch of tiles (the model's one pass over a canvas, on any device, or with
    `in_native` the native coder's walk), the TileSymbols of each tile: everything a coder needs."""
    conds = None if conds is None else dict(enumerate(conds))
    for p in planes:
        if p.shape[2] != model.cfg.channels:
            raise ValueError(f"plane has {p.shape[2]} channels, the model codes {model.cfg.channels}")
    tiles = [(k, n, *t) for k, p in enumerate(planes) for n, t in enumerate(tile_grid(p.shape[0], p.shape[1], tile))]
    for batch in batches(tiles, max_pixels, first=2):
        if in_native:
            yield native_symbols(model, planes, batch)
            continue
        canvas, flat = load_batch(model, [t[:1] + t[2:] for t in batch], planes, conds)
        params = model.encode_params(canvas, flat)          # (n_pixels, C, D)
        items, first = [], 0
        for n, (k, number, y0, x0, h, w) in enumerate(batch):
            i, j, c = (a.copy() for a in coding_order(h, w, model.slope, model.cfg.channels))
            rows = torch.from_numpy(first + i * w + j).to(params.device)    # canvas.pixels(): raster per tile
            symbols = model.cfg.symbols(planes[k][y0 + i, x0 + j, c].astype(np.int32)).astype(np.int64)
            items.append(TileSymbols((k, number), symbols, params[rows, torch.from_numpy(c).to(params.device)],
                                     i, (h, w)))
            first += h * w
        yield items


def native_symbols(model: IntPixelCNN, planes: list[np.ndarray], batch) -> list[TileSymbols]:
    """batch_symbols' items of a batch with the head outputs from the native decoder's walk over the
    known pixels (already in coding order; the engine's integers, tests/test_native.py), tiles in
    torch's number of threads."""
    C = model.cfg.channels
    crops = [np.ascontiguousarray(planes[k][y0:y0 + h, x0:x0 + w]) for k, _, y0, x0, h, w in batch]
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        params = list(pool.map(lambda crop: native.tile_params(model, crop), crops))
    items = []
    for (k, number, _, _, h, w), crop, p in zip(batch, crops, params):
        i, j, c = coding_order(h, w, model.slope, C)
        symbols = model.cfg.symbols(crop[i, j, c].astype(np.int32)).astype(np.int64)
        items.append(TileSymbols((k, number), symbols, torch.from_numpy(p), i.copy(), (h, w)))
    return items


def tile_symbols(model: IntModel, planes: list[np.ndarray], tile: int, max_pixels: int,
                 conds: list[np.ndarray] | None = None, in_native: bool = False):
    """Yield ((plane, tile number), symbols, head outputs (n, D) on the CPU) tile by tile, in coding
    order."""
    for items in batch_symbols(model, planes, tile, max_pixels, conds, in_native):
        for t in items:
            yield t.key, t.symbols.astype(np.int32), t.params.cpu()


def collect(n_planes: int, coded, progress, channels: int) -> list[tuple[list[np.ndarray], float]]:
    """Per plane, its streams and ideal bits, from (key, symbol count, (words, bits)) in stream order."""
    streams, bits = [[] for _ in range(n_planes)], [0.0] * n_planes
    for (k, _), n, (words, tile_bits) in coded:
        streams[k].append(words)
        bits[k] += tile_bits
        if progress:
            progress(n // channels)
    return list(zip(streams, bits))


@torch.inference_mode()     # no autograd bookkeeping on the thousands of small ops (a decode's CPU time -13 %)
def encode_planes(model, planes, tile, progress, max_pixels, limit: int, conds=None, coder="rans",
                  in_native=False):
    """Code planes in this process: the network's pass batch by batch, then the tiles' streams with
    the rANS lanes (lockstep groups of at most `limit` symbols) or the range coder."""
    if coder == "rans":
        coded = (c for items in batch_symbols(model, planes, tile, max_pixels, conds, in_native)
                 for c in code_lanes(model, items, limit))
    else:
        coded = ((key, len(symbols), range_coder.encode_tile(model, symbols, params))
                 for key, symbols, params in tile_symbols(model, planes, tile, max_pixels, conds, in_native))
    return collect(len(planes), coded, progress, model.cfg.channels)


def code_lanes(model, items: list[TileSymbols], limit: int, encode_here=None):
    """Format v3: code a batch of tiles with the rANS lanes, in lockstep groups of consecutive tiles
    of at most `limit` symbols (a tile's lanes never depend on another tile's, so the grouping changes
    no byte). Yields (key, symbol count, (stream words, ideal bits)) per tile. `encode_here`: the
    lockstep on the device of the head outputs (`gpu.encode_lanes_here`), else numpy's."""
    group, size = [], 0
    for t in items:
        if group and size + len(t.symbols) > limit:
            yield from _code_lane_group(model, group, encode_here)
            group, size = [], 0
        group.append(t)
        size += len(t.symbols)
    if group:
        yield from _code_lane_group(model, group, encode_here)


def _code_lane_group(model, items: list[TileSymbols], encode_here=None):
    """All lanes of `items` in one lockstep: numpy on the CPU, or with `encode_here` where their head
    outputs are (a GPU; the same integers). A tile's stream: its K lanes' final states
    (`pack_states`), then the word each symbol's renormalisation wrote, in coding order: the order in
    which the decoder reads them (sub-step by sub-step; within one, pass by pass and row by row, and a
    pass's rows ascend with i)."""
    counts = [lanes_per_tile(*t.shape, model.slope) for t in items]
    bases = np.cumsum([0] + counts)
    lane = np.concatenate([b + t.rows % k for t, b, k in zip(items, bases, counts)])
    symbols = np.concatenate([t.symbols for t in items])
    params = torch.cat([t.params for t in items])
    here = encode_here is not None
    if here:
        tables, symbols = model.cdf_tables_here(params), torch.from_numpy(symbols).to(params.device)
        lane = torch.from_numpy(lane).to(params.device)
    else:
        tables = model.cdf_tables(params)
    below, upto, total = tables.at(symbols), tables.at(symbols + 1), tables.total
    lo = rans.quantise(below, total)
    encode = encode_here if here else rans.encode_lanes
    states, written, words = encode(lo, rans.quantise(upto, total) - lo, lane, int(bases[-1]))
    if here:      # the streams are assembled here; the ideal bits computed here, as on the CPU
        states, written, words, total, width = (a.cpu().numpy() for a in (states, written, words, total, upto - below))
    else:
        width = upto - below
    bits = np.log2(total.astype(np.float64)) - np.log2(width.astype(np.float64))   # reporting only
    start = 0
    for t, b, k in zip(items, bases, counts):
        end = start + len(t.symbols)
        stream = np.concatenate([pack_states(states[b:b + k]), words[start:end][written[start:end]]])
        yield t.key, len(t.symbols), (stream.astype(np.uint32), float(np.sum(bits[start:end])))
        start = end


class PerTile:
    """Adapts a per-tile choose(key, freq, (i, j, c)) to a decoding step of all tiles: the tables are
    built on the CPU and handed over tile by tile."""

    def __init__(self, model: IntModel, choose, dtype: torch.dtype):
        self.model, self.choose, self.dtype = model, choose, dtype

    def begin(self, batch, tiles: np.ndarray, ii: np.ndarray, t: np.ndarray):
        self.keys = [b[0] for b in batch]
        self.tiles, self.ii, self.jj = tiles, ii, t - self.model.slope * ii
        self.tile_change = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1], True])

    def step(self, params: torch.Tensor, s: int, e: int, c: int) -> torch.Tensor:
        freq = self.model.frequencies(params.cpu(), self.dtype)
        cuts = self.tile_change[(self.tile_change >= s) & (self.tile_change <= e)]
        cuts = np.unique(np.r_[s, cuts, e]) - s              # this wavefront's per-tile segments
        symbols = np.empty(e - s, dtype=np.int64)
        for a, b in zip(cuts[:-1], cuts[1:]):
            where = (self.ii[s + a:s + b], self.jj[s + a:s + b], c)
            symbols[a:b] = self.choose(self.keys[self.tiles[s + a]], freq[a:b], where)
        return torch.from_numpy(symbols).to(params.device)

    def finish(self):
        pass


class LaneDecoder:
    """Format v3's decoder: every lane of every tile of a batch advances together, at most PASSES
    vectorised rANS steps per sub-step (numpy, on the CPU wherever the network runs). `streams`
    {key: uint32 words}. Raises ValueError at the end of a batch unless every stream was consumed
    exactly: each lane back in rANS's initial state, each stream at its last word."""

    def __init__(self, model: IntModel, streams: dict):
        self.model, self.streams = model, streams

    def begin(self, batch, tiles: np.ndarray, ii: np.ndarray, t: np.ndarray):
        lanes = np.array([lanes_per_tile(h, w, self.model.slope) for _, _, _, h, w in batch])
        words, states, starts, ends, offset = [], [], [], [], 0
        for (key, *_), k in zip(batch, lanes):
            stream = np.asarray(self.streams[key])
            x, used = unpack_states(stream, int(k))
            words.append(stream.astype(np.int64))
            states.append(x)
            starts.append(offset + used)
            offset += len(stream)
            ends.append(offset)
        self.words = np.concatenate(words)      # an overrun reads a clipped position; caught at the end
        self.state = np.concatenate(states)
        self.ptr, self.end = np.array(starts), np.array(ends)
        self.tile_lanes, self.lane_bases = lanes, np.cumsum(lanes) - lanes
        self._schedule(tiles, ii, t, lanes, self.lane_bases)

    def _schedule(self, tiles, ii, t, lanes, bases):
        """Each sub-step's passes, for the whole batch at once: pixel n of the decoding order (by t,
        tile, i) goes to lane bases[tile] + i % K and pass (i - i0) // K, i0 being its tile's first row
        in that wavefront; within a wavefront, the pixels are regrouped pass by pass."""
        n = len(tiles)
        idx = np.arange(n)
        group = np.r_[True, (t[1:] != t[:-1]) | (tiles[1:] != tiles[:-1])]
        i0 = ii[np.maximum.accumulate(np.where(group, idx, 0))]
        passes = (ii - i0) // lanes[tiles]
        perm = np.lexsort((idx, passes, t))      # a wavefront keeps its range [s, e) of positions
        tp, pp, tl = t[perm], passes[perm], tiles[perm]
        new_pass = np.r_[True, (tp[1:] != tp[:-1]) | (pp[1:] != pp[:-1])]
        new_group = new_pass | np.r_[True, tl[1:] != tl[:-1]]
        wave_start = np.maximum.accumulate(np.where(np.r_[True, tp[1:] != tp[:-1]], idx, 0))
        self.order = perm - wave_start              # position within its wavefront, in pass order
        self.lane = bases[tl] + ii[perm] % lanes[tl]
        self.tile = tl
        self.pass_id = pp
        self.group_first = np.maximum.accumulate(np.where(new_group, idx, 0))    # its tile's first in the pass
        self.first = self.group_first - np.maximum.accumulate(np.where(new_pass, idx, 0))
        cuts = np.flatnonzero(np.r_[new_pass, True])
        self.passes: dict[int, list] = {}
        for a, b in zip(cuts[:-1], cuts[1:]):
            self.passes.setdefault(int(wave_start[a]), []).append((int(a), int(b)))

    def step(self, params: torch.Tensor, s: int, e: int, c: int) -> torch.Tensor:
        order = self.order[s:e]
        tables = self.model.cdf_tables(params.cpu().numpy()[order])      # in pass order
        decoded = []
        for a, b in self.passes[s]:
            lane, tile, first = self.lane[a:b], self.tile[a:b], self.first[a:b]
            sym, x, need = rans.decode_step(self.state[lane], tables[a - s:b - s])
            before = np.cumsum(need) - need                       # reads before this one in the pass...
            pos = self.ptr[tile] + before - before[first]         # ...from its own tile's stream
            self.state[lane] = rans.refill(x, need, self.words.take(pos, mode="clip"))
            self.ptr += np.bincount(tile[need], minlength=len(self.ptr))
            decoded.append(sym)
        symbols = np.empty(e - s, dtype=np.int64)
        symbols[order] = np.concatenate(decoded)
        return torch.from_numpy(symbols).to(params.device)

    def finish(self):
        # a stream that ran out read past its end, so its pointer ends past it
        if not ((self.state == rans.LOW).all() and (self.ptr == self.end).all()):
            raise ValueError("a stream does not decode to its end exactly")
