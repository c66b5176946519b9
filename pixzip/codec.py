"""Entropy coding of image planes with an integer model.

A plane (H, W, C) is cut into tiles; each tile is coded independently into its own stream, so tiles
can be decoded in any grouping (and on several cores). Symbols are coded in the decoder's order:
wavefront t = j + s*i ascending, then channel (R, G, B), then row i. The encoder evaluates the model
once over every pixel of a batch of tiles; the decoder walks the wavefronts of a batch of tiles
together. Both run the same layer code (`encode_params` over all pixels, `step_params` per wavefront
and channel) and the same integer tables.

Two coders, both on the CPU wherever the network runs: "rans" (format version 3, `pixzip.rans`):
every tile has a few rANS lanes (row i is lane i % K), so that all symbols of one decoding sub-step,
across every tile of the batch, decode in at most PASSES vectorised numpy steps; "range" (versions 1
and 2): constriction's range coder, one call and one set of tables per tile and sub-step.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, NamedTuple

import constriction
import numpy as np
import torch

from . import native, rans, triton_lanes
from .engine import ROW, IntEnsemble, IntModel, IntMultiScale, IntPixelCNN, require_gpu_path
from .errors import PixzipError

# constriction quantises the (integer-valued) frequencies to its own fixed point deterministically;
# perfect=False is the leaky quantiser whose result is documented to be platform independent.
FAMILY = constriction.stream.model.Categorical(perfect=False)
CHUNK_SYMBOLS = 1 << 12       # symbols per call to the coder: their tables (8 MB) stay in the cache
MAX_BATCH_PIXELS = 1 << 20     # tiles coded together at most; bounds memory, never changes the bits
MAX_BATCH_PIXELS_CUDA = 1 << 23     # on a GPU (about 2 GB of canvas): wider steps, the same bits
CODERS = ("rans", "range")    # format version 3, versions 1-2
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


def _batches(tiles, max_pixels: int, first: int = 0):
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


def _coding_order(canvas, slope: int, channels: int, tile: int):
    """Rows i, columns j and channels of one tile's symbols, in coding order."""
    return tuple(a.copy() for a in _order(*canvas.sizes[tile], slope, channels))


@lru_cache(maxsize=64)
def _order(h: int, w: int, slope: int, channels: int):
    """By wavefront t = j + slope * i, then channel, then row (cached: tiles share a few sizes)."""
    i, j = np.divmod(np.arange(h * w), w)
    i, j = np.repeat(i, channels), np.repeat(j, channels)
    c = np.tile(np.arange(channels), h * w)
    order = np.lexsort((i, c, j + slope * i))
    return i[order], j[order], c[order]


def _load_batch(model: IntModel, batch, planes: list[np.ndarray] | None, conds: dict | None = None):
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
            model.condition(canvas, n, _small_part(conds[k], y0, x0, h, w, model.cfg.scale))
    return canvas, flat


def encoder_tables(model: IntModel, planes: list[np.ndarray], tile: int,
                   max_pixels: int = MAX_BATCH_PIXELS, dtype: torch.dtype = torch.int32,
                   conds: list[np.ndarray] | None = None):
    """Yield ((plane, tile number), symbols, head outputs, frequency tables) chunk by chunk, in coding
    order.

    The model runs once over every pixel of a batch of tiles, which may come from several planes
    (images), all channel groups at once. A conditional model also takes each plane's subsampled
    plane (`conds`)."""
    for key, symbols, params in tile_symbols(model, planes, tile, max_pixels, conds):
        for sym, p in _chunks(symbols, params):
            yield key, sym, p, model.frequencies(p, dtype)


def _chunks(symbols: np.ndarray, params: torch.Tensor):
    """A tile's symbols and head outputs in the coder's chunks of CHUNK_SYMBOLS."""
    for s in range(0, len(symbols), CHUNK_SYMBOLS):
        yield symbols[s:s + CHUNK_SYMBOLS], params[s:s + CHUNK_SYMBOLS]


class TileSymbols(NamedTuple):
    key: tuple[int, int]          # (plane, tile number)
    symbols: np.ndarray           # int64, in coding order
    params: torch.Tensor          # head outputs (n, D) on the model's device, same order
    rows: np.ndarray              # each symbol's row i in its tile
    shape: tuple[int, int]        # the tile's (h, w)


def _batch_symbols(model: IntModel, planes: list[np.ndarray], tile: int, max_pixels: int = MAX_BATCH_PIXELS,
                   conds: list[np.ndarray] | None = None):
    """Yield, per batch of tiles (the model's one pass over a canvas, on any device), the TileSymbols
    of each tile: everything a coder needs."""
    conds = None if conds is None else dict(enumerate(conds))
    for p in planes:
        if p.shape[2] != model.cfg.channels:
            raise ValueError(f"plane has {p.shape[2]} channels, the model codes {model.cfg.channels}")
    tiles = [(k, n, *t) for k, p in enumerate(planes) for n, t in enumerate(tile_grid(p.shape[0], p.shape[1], tile))]
    in_native = conds is None and native.supports(model)
    for batch in _batches(tiles, max_pixels, first=2):
        if in_native:
            yield _native_symbols(model, planes, batch)
            continue
        canvas, flat = _load_batch(model, [t[:1] + t[2:] for t in batch], planes, conds)
        params = model.encode_params(canvas, flat)          # (n_pixels, C, D)
        items, first = [], 0
        for n, (k, number, y0, x0, h, w) in enumerate(batch):
            i, j, c = _coding_order(canvas, model.slope, model.cfg.channels, n)
            rows = torch.from_numpy(first + i * w + j).to(params.device)    # canvas.pixels(): raster per tile
            symbols = model.cfg.symbols(planes[k][y0 + i, x0 + j, c].astype(np.int32)).astype(np.int64)
            items.append(TileSymbols((k, number), symbols, params[rows, torch.from_numpy(c).to(params.device)],
                                     i, (h, w)))
            first += h * w
        yield items


def _native_symbols(model: IntPixelCNN, planes: list[np.ndarray], batch) -> list[TileSymbols]:
    """_batch_symbols' items of a batch with the head outputs from the native decoder's walk over the
    known pixels (already in coding order; the engine's integers, tests/test_native.py), tiles in
    torch's number of threads."""
    C = model.cfg.channels
    crops = [np.ascontiguousarray(planes[k][y0:y0 + h, x0:x0 + w]) for k, _, y0, x0, h, w in batch]
    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        params = list(pool.map(lambda crop: native.tile_params(model, crop), crops))
    items = []
    for (k, number, _, _, h, w), crop, p in zip(batch, crops, params):
        i, j, c = _order(h, w, model.slope, C)
        symbols = model.cfg.symbols(crop[i, j, c].astype(np.int32)).astype(np.int64)
        items.append(TileSymbols((k, number), symbols, torch.from_numpy(p), i.copy(), (h, w)))
    return items


def tile_symbols(model: IntModel, planes: list[np.ndarray], tile: int, max_pixels: int = MAX_BATCH_PIXELS,
                 conds: list[np.ndarray] | None = None):
    """Yield ((plane, tile number), symbols, head outputs (n, D) on the CPU) tile by tile, in coding
    order."""
    for items in _batch_symbols(model, planes, tile, max_pixels, conds):
        for t in items:
            yield t.key, t.symbols.astype(np.int32), t.params.cpu()


def coding_device(model, device) -> torch.device | None:
    """Where `model` runs for a `device` of "cpu", "cuda", "auto" or None: None for the CPU.
    ValueError for a model the GPU path does not run. "auto" is the CPU for the models the native
    coder runs (on two cores it already codes as fast as the GPU path did on an H100, 2.3-2.9 MP/s,
    and a GPU machine has many cores), else a GPU if torch sees one and the model runs there."""
    if device == "auto":
        gpu = torch.cuda.is_available() and isinstance(model, IntPixelCNN) and not native.supports(model)
        device = "cuda" if gpu else None
    if device is None or torch.device(device).type == "cpu":
        return None
    require_gpu_path(model)
    return torch.device(device)


def placed(model, device, max_pixels: int):
    """(model, max_pixels) for coding on `device` (see coding_device). On a GPU the network runs there,
    in this process, on wider canvases; the coder stays on the CPU. The integers are the same on every
    device (tests/test_gpu.py), so the bytes are too."""
    device = coding_device(model, device)
    if device is None:
        return model, max_pixels
    if max_pixels == MAX_BATCH_PIXELS:
        max_pixels = MAX_BATCH_PIXELS_CUDA
    return model.on(device), max_pixels


def check_coder(model, coder: str):
    """An ensemble runs only in the native coder (format v3, pixzip/_native.c): say so in one line
    where it cannot run, rather than fail inside another path."""
    if isinstance(model, IntEnsemble):
        if coder != "rans":
            raise PixzipError("ensemble models are coded with format version 3 only")
        if not native.supports(model):
            raise PixzipError("ensemble models need pixzip's native CPU coder, which this installation lacks "
                              "(it is compiled at install when a C compiler is present; PIXZIP_NATIVE=0 turns it off)")


def check_tile(model, tile: int):
    """A multi-scale model's tiles must start on its subsampling grid."""
    if isinstance(model, IntMultiScale) and tile % model.cfg.scale:
        raise ValueError(f"the tile size must be a multiple of the model's scale ({model.cfg.scale})")


def stream_count(model, height: int, width: int, tile: int) -> int:
    """How many streams a plane has, by arithmetic (no tile list is built)."""
    n = 1 if tile == 0 else -(-height // tile) * -(-width // tile)
    if isinstance(model, IntMultiScale):
        n += stream_count(model.small, *model.small_shape(height, width), tile)
    return n


def stream_shapes(model, height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """(h, w) of the pixels each of a plane's streams codes, in stream order."""
    grid = [(h, w) for _, _, h, w in tile_grid(height, width, tile)]
    if isinstance(model, IntMultiScale):
        return stream_shapes(model.small, *model.small_shape(height, width), tile) + grid
    return grid


def encode_planes(model: IntModel | IntMultiScale, planes: list[np.ndarray], tile: int,
                  progress: Callable[[int], None] | None = None,
                  max_pixels: int = MAX_BATCH_PIXELS, workers: int = 1,
                  device=None, coder: str = "rans") -> list[tuple[list[np.ndarray], float]]:
    """Code uint8 planes (H, W, C), in one batched pass, into one uint32 word array per tile each
    (a multi-scale model: the small image's tiles, then the full image's). `device`: where the
    network runs (None: the CPU; the coder is always there); `coder`: "rans" (format v3) or "range" (v2).

    With workers > 1 (and enough pixels), groups of tiles are coded in parallel processes: every tile
    is its own stream, so the bytes are the same. Also returns each plane's ideal code length in bits
    (for reporting; never used for coding)."""
    if coder not in CODERS:
        raise ValueError(f"unknown coder {coder!r}")
    check_coder(model, coder)
    model, max_pixels = placed(model, device, max_pixels)
    if isinstance(model, IntMultiScale):
        check_tile(model, tile)
        smalls = [model.subsample(p) for p in planes]
        first = encode_planes(model.small, smalls, tile, None, max_pixels, coder=coder)
        second = _encode_planes(model.big, planes, tile, progress, max_pixels, smalls, coder)
        return [(s1 + s2, b1 + b2) for (s1, b1), (s2, b2) in zip(first, second)]
    grids = [tile_grid(p.shape[0], p.shape[1], tile) for p in planes]
    jobs = [(k, n, t) for k, g in enumerate(grids) for n, t in enumerate(g)]
    workers = min(workers, len(jobs))
    large = sum(p.shape[0] * p.shape[1] for p in planes) >= ENCODE_PARALLEL_MIN_PIXELS
    if model.device.type != "cpu":
        return _encode_on_device(model, planes, tile, progress, max_pixels, workers if large else 1, coder)
    if coder == "rans" and native.supports(model):
        return _encode_native(model, planes, jobs, progress, workers if workers > 1 else torch.get_num_threads())
    if workers <= 1 or not large:
        return _encode_planes(model, planes, tile, progress, max_pixels, coder=coder)
    streams = [[None] * len(g) for g in grids]
    bits = [0.0] * len(planes)
    for g, result in _in_workers(workers, jobs, lambda g: (_encode_tiles, (
            model, [_crop(planes[k], t) for k, _, t in g], max_pixels, coder))):
        for (k, n, (_, _, h, w)), (tile_streams, tile_bits) in zip(g, result):
            streams[k][n] = tile_streams[0]
            bits[k] += tile_bits
            if progress:
                progress(h * w)
    return list(zip(streams, bits))


def _encode_native(model: IntPixelCNN, planes: list[np.ndarray], jobs: list, progress, threads: int):
    """Format v3 with the native encoder: one call per tile (`jobs`: (plane, tile number, (y, x, h, w))),
    in `threads` threads (the call releases the GIL); the bytes of _code_lanes (tests/test_native.py)."""
    def one(job):
        k, _, (y, x, h, w) = job
        states, words, total, width = native.encode_tile(model, planes[k][y:y + h, x:x + w],
                                                         lanes_per_tile(h, w, model.slope))
        bits = np.log2(total.astype(np.float64)) - np.log2(width.astype(np.float64))   # reporting only
        return np.concatenate([_pack_states(states), words]), float(np.sum(bits))

    streams, bits = [[] for _ in planes], [0.0] * len(planes)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for (k, _, (_, _, h, w)), (stream, tile_bits) in zip(jobs, pool.map(one, jobs)):
            streams[k].append(stream)
            bits[k] += tile_bits
            if progress:
                progress(h * w)
    return list(zip(streams, bits))


def _in_workers(workers: int, jobs: list, task):
    """Split `jobs` into `workers` consecutive groups and run `task(group)` -> (function, args) for each
    in worker processes; yields (group, result) in order. Tiles are independent streams, so the
    grouping never changes a byte."""
    pool = _pool(workers)
    try:
        groups = [[jobs[i] for i in g] for g in np.array_split(np.arange(len(jobs)), workers)]
        pending = [pool.apply_async(*task(g)) for g in groups]
        for g, job in zip(groups, pending):
            yield g, job.get()
    finally:
        pool.terminate()


def _crop(plane: np.ndarray, tile: tuple[int, int, int, int]) -> np.ndarray:
    y, x, h, w = tile
    return np.ascontiguousarray(plane[y:y + h, x:x + w])


def _encode_tiles(model, tiles: list[np.ndarray], max_pixels: int, coder: str):
    """A worker's share: each tile coded as a plane of its own (one stream: the tile's bytes)."""
    with one_thread():
        return _encode_planes(model, tiles, 0, None, max_pixels, coder=coder)


def _encode_on_device(model, planes, tile, progress, max_pixels, workers, coder):
    """The network on the device in this process. The rANS lanes run there too (`_encode_lanes_here`)
    unless PIXZIP_DEVICE_LANES=0; otherwise the coder runs on the CPU, fanned out to `workers`
    processes: tile by tile for the range coder, in groups of tiles for the rANS lanes. Every tile is
    its own stream, so the same bytes."""
    if coder == "rans" and _lanes_on_device(model):
        coded = (c for items in _batch_symbols(model, planes, tile, max_pixels)
                 for c in _code_lanes(model, items, here=True))
        return _collect(len(planes), coded, progress, model.cfg.channels)
    if workers <= 1:
        return _encode_planes(model, planes, tile, progress, max_pixels, coder=coder)
    pool = _pool(workers, _coder_worker, (model.host,))
    try:
        if coder == "range":
            pending = [(key, len(symbols), pool.apply_async(_code_tile, (symbols, params)))
                       for key, symbols, params in tile_symbols(model, planes, tile, max_pixels)]
            coded = ((key, n, job.get()) for key, n, job in pending)
        else:
            jobs = []
            for items in _batch_symbols(model, planes, tile, max_pixels):
                items = [t._replace(params=t.params.cpu()) for t in items]
                for g in np.array_split(np.arange(len(items)), min(workers, len(items))):
                    jobs.append(pool.apply_async(_code_lanes_job, ([items[i] for i in g],)))
            coded = (c for job in jobs for c in job.get())
        return _collect(len(planes), coded, progress, model.cfg.channels)
    finally:
        pool.terminate()


def _collect(n_planes: int, coded, progress, channels: int) -> list[tuple[list[np.ndarray], float]]:
    """Per plane, its streams and ideal bits, from (key, symbol count, (words, bits)) in stream order."""
    streams, bits = [[] for _ in range(n_planes)], [0.0] * n_planes
    for (k, _), n, (words, tile_bits) in coded:
        streams[k].append(words)
        bits[k] += tile_bits
        if progress:
            progress(n // channels)
    return list(zip(streams, bits))


_worker_model = None


def _coder_worker(model):
    global _worker_model
    _ignore_sigint()
    _worker_model = model
    torch.set_num_threads(1)


def _code_lanes_job(items: list[TileSymbols]) -> list:
    """A coder process's share of a batch: its tiles' streams (the lanes of a tile never depend on
    another tile's)."""
    return list(_code_lanes(_worker_model, items))


def _code_tile(symbols: np.ndarray, params: torch.Tensor, model=None) -> tuple[np.ndarray, float]:
    """One tile's stream from its symbols and head outputs, and its ideal length in bits (for
    reporting). The tables are made on the CPU, as the decoder makes them."""
    model = _worker_model if model is None else model
    enc, bits = constriction.stream.queue.RangeEncoder(), 0.0
    for sym, p in _chunks(symbols, params):
        freq = model.frequencies(p, torch.float64)
        enc.encode(sym, FAMILY, freq.numpy())
        bits += float(np.sum(model.code_lengths(p, sym, freq)))
    return enc.get_compressed(), bits


@torch.inference_mode()     # no autograd bookkeeping on the thousands of small ops (a decode's CPU time -13 %)
def _encode_planes(model, planes, tile, progress, max_pixels, conds=None, coder="rans"):
    if coder == "rans":
        coded = (c for items in _batch_symbols(model, planes, tile, max_pixels, conds)
                 for c in _code_lanes(model, items))
    else:
        coded = ((key, len(symbols), _code_tile(symbols, params, model))
                 for key, symbols, params in tile_symbols(model, planes, tile, max_pixels, conds))
    return _collect(len(planes), coded, progress, model.cfg.channels)


CODER_SYMBOLS = 1 << 21    # symbols coded in one lockstep at most (~70 bytes each): bounds the coder's memory, not the bits;
# a lockstep costs per step whatever its width, so a 768x512 photo (1.2 M symbols) is one group, not two
CODER_SYMBOLS_HERE = 1 << 24    # the same on a GPU (~60 bytes each there): a whole canvas of 768x512 photos


def _code_lanes(model, items: list[TileSymbols], here: bool = False):
    """Format v3: code a batch of tiles with the rANS lanes, in lockstep groups of consecutive tiles
    of at most CODER_SYMBOLS symbols (CODER_SYMBOLS_HERE on a GPU; a tile's lanes never depend on
    another tile's, so the grouping changes no byte). Yields (key, symbol count, (stream words,
    ideal bits)) per tile."""
    group, size, limit = [], 0, CODER_SYMBOLS_HERE if here else CODER_SYMBOLS
    for t in items:
        if group and size + len(t.symbols) > limit:
            yield from _code_lane_group(model, group, here)
            group, size = [], 0
        group.append(t)
        size += len(t.symbols)
    if group:
        yield from _code_lane_group(model, group, here)


def _code_lane_group(model, items: list[TileSymbols], here: bool = False):
    """All lanes of `items` in one lockstep: numpy on the CPU, or with `here` where their head outputs
    are (a GPU: `_encode_lanes_here`; the same integers). A tile's stream: its K lanes' final states
    (`_pack_states`), then the word each symbol's renormalisation wrote, in coding order: the order in
    which the decoder reads them (sub-step by sub-step; within one, pass by pass and row by row, and a
    pass's rows ascend with i)."""
    counts = [lanes_per_tile(*t.shape, model.slope) for t in items]
    bases = np.cumsum([0] + counts)
    lane = np.concatenate([b + t.rows % k for t, b, k in zip(items, bases, counts)])
    symbols = np.concatenate([t.symbols for t in items])
    params = torch.cat([t.params for t in items])
    if here:
        tables, symbols = model.cdf_tables_here(params), torch.from_numpy(symbols).to(params.device)
        lane = torch.from_numpy(lane).to(params.device)
    else:
        tables = model.cdf_tables(params)
    below, upto, total = tables.at(symbols), tables.at(symbols + 1), tables.total
    lo = rans.quantise(below, total)
    encode = _encode_lanes_here if here else rans.encode_lanes
    states, written, words = encode(lo, rans.quantise(upto, total) - lo, lane, int(bases[-1]))
    if here:      # the streams are assembled here; the ideal bits computed here, as on the CPU
        states, written, words, total, width = (a.cpu().numpy() for a in (states, written, words, total, upto - below))
    else:
        width = upto - below
    bits = np.log2(total.astype(np.float64)) - np.log2(width.astype(np.float64))   # reporting only
    start = 0
    for t, b, k in zip(items, bases, counts):
        end = start + len(t.symbols)
        stream = np.concatenate([_pack_states(states[b:b + k]), words[start:end][written[start:end]]])
        yield t.key, len(t.symbols), (stream.astype(np.uint32), float(np.sum(bits[start:end])))
        start = end


LOCKSTEP_GRAPH_STEPS = 64     # lockstep steps per CUDA graph replay


def _encode_lanes_here(lo: torch.Tensor, freq: torch.Tensor, lane: torch.Tensor, n_lanes: int):
    """rans.encode_lanes in torch, on the device of its inputs: the same lockstep, the same integers.
    On a GPU, LOCKSTEP_GRAPH_STEPS steps are captured as one CUDA graph and replayed (a step is a dozen
    kernels on a few thousand lanes: launch-bound otherwise); steps past a lane's last symbol do
    nothing, so the last replay may overrun. Returns (states, written, words) as rans.encode_lanes."""
    n, device = len(lo), lo.device
    order = torch.argsort(lane, stable=True)               # lane by lane, decoding order kept
    counts = torch.bincount(lane, minlength=n_lanes)
    last = counts.cumsum(0) - 1
    # position n: a spare symbol (width 1) that idle lanes read and where they write nothing real
    lo = torch.cat([lo[order], lo.new_zeros(1)])
    freq = torch.cat([freq[order], freq.new_ones(1)])
    written = torch.zeros(n + 1, dtype=torch.bool, device=device)
    word = torch.zeros(n + 1, dtype=torch.int64, device=device)
    x = torch.full((n_lanes,), rans.LOW, dtype=torch.int64, device=device)
    m = torch.zeros((), dtype=torch.int64, device=device)
    step_fn = _fused(_lockstep_step)

    def step():
        step_fn(x, m, counts, last, lo, freq, written, word, n)

    total_steps = int(counts.max()) if n else 0
    graph = None
    if device.type == "cuda" and total_steps > LOCKSTEP_GRAPH_STEPS:
        step()     # a first step before capture: compiles (PIXZIP_COMPILE=1) and warms up; undone below
        graph = _lockstep_graph(step)
        m.zero_(), x.fill_(rans.LOW), written.zero_(), word.zero_()
    if graph is not None:
        for _ in range(-(-total_steps // LOCKSTEP_GRAPH_STEPS)):
            graph.replay()
    else:
        for _ in range(total_steps):
            step()
    out_written, out_word = torch.empty_like(written[:n]), torch.empty_like(word[:n])
    out_written[order], out_word[order] = written[:n], word[:n]
    return x, out_written, out_word


def _lockstep_step(x, m, counts, last, lo, freq, written, word, n: int):
    """Step m of the lockstep (backwards: each lane's m-th symbol from its last), in place: the
    states `x`, the step `m`, and where a renormalisation wrote, `written` and `word`."""
    valid = counts > m
    at = torch.where(valid, last - m, n)
    f = freq[at]
    wrote = (x >= (f << rans.WORD_BITS)) & valid
    where = torch.where(wrote, at, n)
    written[where] = wrote
    word[where] = x & rans.WORD_MASK
    shifted = torch.where(wrote, x >> rans.WORD_BITS, x)
    q = torch.div(shifted, f, rounding_mode="floor")
    x.copy_(torch.where(valid, (q << rans.PRECISION) + (shifted - q * f) + lo[at], shifted))
    m.add_(1)


def _lockstep_graph(step):
    """LOCKSTEP_GRAPH_STEPS calls of `step` captured as one CUDA graph, or None if this driver or
    PyTorch cannot capture them (then the steps run eagerly: the same integers)."""
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(LOCKSTEP_GRAPH_STEPS):
                step()
        GRAPH_STATS["captured"] += 1
        return graph
    except RuntimeError as e:
        _record_failure(GRAPH_STATS, e)
        return None


def _pack_states(states: np.ndarray) -> np.ndarray:
    """Final lane states as words: the high parts (x >> 32, < 2^24) as LEB128 varints (about 2 bytes
    where 3 would be fixed: the states' magnitudes are spread evenly on a log scale), lane by lane,
    zero-padded to whole words; then the low words. The decoder reads the low words as ordinary
    refills."""
    packed = bytearray()
    for high in (states >> rans.WORD_BITS).tolist():
        while high >= 0x80:
            packed.append(high & 0x7F | 0x80)
            high >>= 7
        packed.append(high)
    packed += bytes(-len(packed) % 4)
    return np.concatenate([np.frombuffer(bytes(packed), dtype="<u4"), states & rans.WORD_MASK]).astype(np.uint32)


def _unpack_states(words: np.ndarray, lanes: int) -> tuple[np.ndarray, int]:
    """Inverse of _pack_states at the start of a stream: (states int64, words used). ValueError for a
    stream too short for them or with non-canonical varints or padding."""
    data = np.asarray(words[:4 * lanes + 4], dtype="<u4").tobytes()   # enough for any K varints
    high, pos = [], 0
    for _ in range(lanes):
        value, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 21:
                raise ValueError("stream too short for its lanes' states")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if byte == 0 and shift > 7 or value >= rans.LOW:           # a redundant zero byte, or too large
            raise ValueError("malformed lane state")
        high.append(value)
    n_high = -(-pos // 4)
    if any(data[pos:4 * n_high]) or len(words) < n_high + lanes:
        raise ValueError("stream too short for its lanes' states")
    low = np.asarray(words[n_high:n_high + lanes], dtype=np.int64)
    return np.array(high, dtype=np.int64) << rans.WORD_BITS | low, n_high + lanes


def encode_plane(model: IntModel, plane: np.ndarray, tile: int,
                 progress: Callable[[int], None] | None = None,
                 max_pixels: int = MAX_BATCH_PIXELS) -> tuple[list[np.ndarray], float]:
    """encode_planes for one plane."""
    return encode_planes(model, [plane], tile, progress, max_pixels)[0]


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


@torch.inference_mode()     # see _encode_planes
def decode_tiles(model: IntModel, jobs: list[tuple], choose, progress: Callable[[int], None] | None = None,
                 max_pixels: int = MAX_BATCH_PIXELS, dtype: torch.dtype = torch.int32,
                 conds: dict | None = None) -> dict:
    """Decode tiles wavefront by wavefront, batched on shared canvases; `jobs` are (key, h, w) with any
    hashable key (the tiles may come from several planes or images). `choose` decides the symbols:
    either a per-tile function choose(key, freq, (i, j, c)) returning the symbols of one tile's
    sub-pixels at the current step (tile rows i, columns j, channel c) given their integer frequency
    tables (constriction's decoder, a sampler, or in tests a recorder; `dtype` is the tables'), or a
    decoder for all tiles at once (`_LaneDecoder`). A conditional model takes each tile's part of the
    subsampled plane, `conds` {key: uint8 array}. Returns {key: uint8 (h, w, C)}."""
    if not hasattr(choose, "begin"):
        choose = _PerTile(model, choose, dtype)
    out = {}
    with one_thread():
        for batch in _batches([(key, 0, 0, h, w) for key, h, w in jobs], max_pixels, first=1):
            out.update(_decode_batch(model, batch, choose, progress, conds))
    return out


def _decode_batch(model: IntModel, batch, decide, progress, conds=None) -> dict:
    """Decode one canvas of tiles (key, 0, 0, h, w)."""
    C = model.cfg.channels
    graphs, on_device = _use_graphs(model), isinstance(decide, _DeviceLanes)
    # CUDA graphs need fixed shapes: every wavefront is padded to the widest with a sink pixel, in a
    # tile of its own that no real pixel reads
    padded = graphs or on_device
    canvas, _ = _load_batch(model, batch + [(None, 0, 0, 1, 1)] if padded else batch, None, conds)
    device = canvas.device
    tiles, ii, jj = canvas.pixels()
    real = tiles < len(batch)
    tiles, ii, jj = tiles[real], ii[real], jj[real]
    t = jj + model.slope * ii
    order = np.lexsort((ii, tiles, t))                    # by t, then tile, then i
    tiles, ii, jj, t = tiles[order], ii[order], jj[order], t[order]
    flat = canvas.flat(tiles, ii, jj)
    bounds = np.flatnonzero(np.r_[True, t[1:] != t[:-1], True])
    decide.begin(batch, tiles, ii, t)
    # the image buffer as one flat vector: writing a channel is a 1-d copy (a strided one is slower)
    img = canvas.buf["img"]
    img_flat, channel_at = img.view(-1), [] if on_device else [flat * C + c for c in range(C)]
    values = torch.from_numpy(np.asarray(model.symbol_values, dtype=np.int64) - 128).to(torch.int8).to(device)
    if padded:
        steps = _GraphSteps(model, canvas, flat, bounds, len(batch), capture=graphs and device.type == "cuda",
                            lanes=(decide, img_flat, values) if on_device else None)
    else:
        steps = _EagerSteps(model, canvas, flat)
    for s, e in zip(bounds[:-1], bounds[1:]):
        steps.wavefront(s, e)
        for c in range(C):
            if on_device:        # the whole sub-step runs there, the write included
                steps.params(c)
            else:
                img_flat.index_copy_(0, channel_at[c][s:e], values[decide.step(steps.params(c), s, e, c)])
        if progress:
            progress(e - s)
    decide.finish()
    # the pixels are where the network read them: the image buffer (value - 128)
    decoded = np.zeros((len(batch), canvas.H, canvas.W, C), dtype=np.uint8)
    decoded[tiles, ii, jj] = (img.index_select(0, flat).cpu().numpy().astype(np.int16) + 128).astype(np.uint8)
    return {key: decoded[n, :h, :w] for n, (key, _, _, h, w) in enumerate(batch)}


class _EagerSteps:
    """The decoder's network steps, op by op: head outputs of one channel at one wavefront."""

    def __init__(self, model: IntModel, canvas, flat: torch.Tensor):
        self.model, self.canvas, self.flat = model, canvas, flat

    def wavefront(self, s: int, e: int):
        self.index = self.model.gather_index(self.canvas, self.flat[s:e])   # gathers reused by R, G, B
        self.cache: dict = {}

    def params(self, c: int) -> torch.Tensor:
        return self.model.step_params(self.canvas, self.index, c, self.cache)


GRAPH_STATS = {"captured": 0, "failed": 0, "error": ""}    # for benchmarks: did CUDA graphs run?


def _record_failure(stats: dict, e: Exception):
    """Count a fallback (no CUDA graph, no compiled kernels) in `stats`, with the first line of why."""
    stats["failed"] += 1
    stats["error"] = str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__


def _use_graphs(model) -> bool:
    """CUDA graphs for the decoder's steps: on a GPU (PixelCNN models), unless PIXZIP_CUDA_GRAPHS=0."""
    return model.device.type == "cuda" and os.environ.get("PIXZIP_CUDA_GRAPHS", "1") != "0" \
        and isinstance(model, IntPixelCNN) and not model.cfg.cond


class _GraphSteps:
    """The decoder's network steps replayed as CUDA graphs, one per channel group: the ~150 small
    kernels of a step cost one launch. A graph has fixed shapes and addresses, so every wavefront is
    copied, padded to the widest with the sink pixel, into one static position tensor; the padding's
    outputs are computed and ignored, its writes land on the sink, which no real pixel reads. The same
    kernels on the same values as the eager steps: the same integers. Without `capture` (or if capture
    fails: GRAPH_STATS) the padded steps run eagerly, which is how the CPU tests check the padding.
    With `lanes` (format v3's lanes on the device), a captured step also decodes its symbols and
    writes them into the image buffer: nothing waits for the host between sub-steps."""

    def __init__(self, model: IntModel, canvas, flat: torch.Tensor, bounds: np.ndarray, sink_tile: int,
                 capture: bool, lanes: tuple | None = None):
        self.model, self.canvas = model, canvas
        sink = canvas.flat(np.array([sink_tile]), np.array([0]), np.array([0]))
        width = int(np.max(np.diff(bounds)))
        self.padded = torch.stack([torch.cat([flat[s:e], sink.expand(width - (e - s))])
                                   for s, e in zip(bounds[:-1], bounds[1:])])
        self.wave = {int(s): k for k, s in enumerate(bounds[:-1])}
        self.pos = sink.expand(width).clone()        # all sink while capturing: nothing real is touched
        # with the lanes on the device (_DeviceLanes, the image buffer, symbol -> value), a step also
        # decodes its symbols and writes them: the padding's land on the spare lane and the sink
        self.lanes = lanes
        if lanes is not None:
            lanes[0].layout(bounds, width)
        self.graphs = None
        if capture:
            try:
                self._capture()
                GRAPH_STATS["captured"] += 1
            except RuntimeError as e:      # a driver or PyTorch that cannot capture these ops
                _record_failure(GRAPH_STATS, e)

    def _capture(self):
        model, canvas, C = self.model, self.canvas, self.model.cfg.channels
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):      # warm-up: builds every cached table and offset first
            index, cache = model.gather_index(canvas, self.pos), {}
            for c in range(C):
                self._sub_step(index, cache, c)
        torch.cuda.current_stream().wait_stream(side)
        index, cache, pool = model.gather_index(canvas, self.pos), {}, None
        graphs, self.outs = [], []
        for c in range(C):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outs.append(self._sub_step(index, cache, c))
            pool = graph.pool()
            graphs.append(graph)
        self.graphs = graphs

    def _sub_step(self, index, cache: dict, c: int) -> torch.Tensor:
        """Head outputs of channel c at the current wavefront (padded); with the lanes here, also
        their symbols decoded and written into the image buffer."""
        params = self.model.step_params(self.canvas, index, c, cache)
        if self.lanes is not None:
            lanes, img_flat, values = self.lanes
            lanes.decode_into(params, img_flat, self.pos, values, c)
        return params

    def wavefront(self, s: int, e: int):
        k = self.wave[s]
        self.pos.copy_(self.padded[k])
        if self.lanes is not None:
            self.lanes[0].wavefront(k)
        self.n = e - s
        if self.graphs is None:
            self.index, self.cache = self.model.gather_index(self.canvas, self.pos), {}

    def params(self, c: int) -> torch.Tensor:
        """Head outputs of channel c at the current wavefront (with the lanes here: decoded too)."""
        if self.graphs is None:
            return self._sub_step(self.index, self.cache, c)[:self.n]
        self.graphs[c].replay()
        return self.outs[c][:self.n]


class _PerTile:
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


class _LaneDecoder:
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
            x, used = _unpack_states(stream, int(k))
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


class _DeviceLanes(_LaneDecoder):
    """_LaneDecoder with the lanes on the network's device (int64 tensors): the same passes and the
    same integers, but nothing returns to the host between sub-steps, so that a whole sub-step (the
    network, the lanes, the write of the decoded values) replays as one CUDA graph (`_GraphSteps`).

    Shapes are fixed for the graphs: every wavefront is laid out padded to one width, its pixels in
    pass order, and each pass runs over the whole width with the other passes' pixels (and the
    padding) masked: they decode on a spare lane (index `lanes`) of a spare tile (index `tiles`), which
    nothing reads. Runs on the CPU too (the tests compare it with _LaneDecoder there)."""

    def begin(self, batch, tiles: np.ndarray, ii: np.ndarray, t: np.ndarray):
        super().begin(batch, tiles, ii, t)
        device = self.model.device
        self.n_lanes, self.n_tiles = len(self.state), len(self.ptr)
        self.x = torch.from_numpy(np.r_[self.state, rans.LOW]).to(device)
        self.at = torch.from_numpy(np.r_[self.ptr, 0]).to(device)
        self.words_here = torch.from_numpy(self.words).to(device)
        self.n_passes = int(self.pass_id.max()) + 1 if len(self.pass_id) else 0
        # PIXZIP_TRITON=1: a Laplace head's sub-step as one Triton kernel (pixzip/triton_lanes.py)
        self.fused = self.model.cfg.head == "laplace" and triton_lanes.available(device)
        if self.fused:
            self.tiles_in_order, self.rows_in_order = tiles, ii
            self.lane_bases_here = torch.from_numpy(self.lane_bases).to(device)
            self.tile_lanes_here = torch.from_numpy(self.tile_lanes).to(device)

    def layout(self, bounds: np.ndarray, width: int):
        """Every wavefront's pixels as five rows of `width` (padding after the pixels): position in
        the wavefront (in pass order), lane, tile, the position where its tile's part of its pass
        starts, pass. The layout of the wavefront to decode is copied into `self.current`. (The
        fused kernel reads another layout, `_segments`, instead.)"""
        if self.fused:
            self._segments(bounds)
            return
        n = len(bounds) - 1
        lay = np.empty((n, 5, width), dtype=np.int32)
        for k, (s, e) in enumerate(zip(bounds[:-1], bounds[1:])):
            real = (self.order[s:e], self.lane[s:e], self.tile[s:e], self.group_first[s:e] - s, self.pass_id[s:e])
            pad = np.arange(e - s, width)
            for row, (a, b) in enumerate(zip(real, (pad, self.n_lanes, self.n_tiles, pad, -1))):
                lay[k, row, :e - s], lay[k, row, e - s:] = a, b
        self.layouts = torch.from_numpy(lay).to(self.model.device)
        neutral = torch.tensor([0, self.n_lanes, self.n_tiles, 0, -1], dtype=torch.int64)[:, None].repeat(1, width)
        neutral[0] = neutral[3] = torch.arange(width)
        self.current = neutral.to(self.model.device)     # nothing real is touched (graph capture)

    def _segments(self, bounds: np.ndarray):
        """The fused kernel's layout: for every wavefront and tile, where the tile's pixels start in
        the wavefront (decoding order: by tile, then row), how many there are, and the first one's row
        (the pixels of a tile in one wavefront are consecutive rows). The one to decode is copied into
        `self.segment`, all zero (nothing to decode) until then."""
        seg = np.zeros((len(bounds) - 1, 3, self.n_tiles), dtype=np.int32)
        for k, (s, e) in enumerate(zip(bounds[:-1], bounds[1:])):
            tiles = self.tiles_in_order[s:e]
            first = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1]])
            seg[k, 0, tiles[first]] = first
            seg[k, 1, tiles[first]] = np.diff(np.r_[first, e - s])
            seg[k, 2, tiles[first]] = self.rows_in_order[s:e][first]
        self.segments = torch.from_numpy(seg).to(self.model.device)
        self.segment = torch.zeros_like(self.segments[0])

    def wavefront(self, k: int):
        if self.fused:
            self.segment.copy_(self.segments[k])
        else:
            self.current.copy_(self.layouts[k])

    def decode_into(self, params: torch.Tensor, img_flat: torch.Tensor, pos: torch.Tensor, values: torch.Tensor,
                    c: int):
        """Decode the current wavefront's channel c from the head outputs there (padded, wavefront
        order) and write the values into the image buffer at the positions `pos`."""
        C = self.model.cfg.channels
        if not self.fused:
            img_flat.index_copy_(0, pos * C + c, values[self.decode(params)])
            return
        prefix = self.model._copy_on(params.device, "laplace_prefix", self.model._laplace_prefix())
        triton_lanes.decode_into(params, self.segment, self.lane_bases_here, self.tile_lanes_here, self.x, self.at,
                                 self.words_here, prefix, pos, img_flat, values, C, c, self.model.cfg.levels,
                                 ROW, int(self.tile_lanes.max()), self.n_passes)

    def decode(self, params: torch.Tensor) -> torch.Tensor:
        """The symbols of the current wavefront (padded, in wavefront order) from the head outputs
        there; the states and read positions advance in place."""
        order = self.current[0]
        tables = self.model.cdf_tables_here(params.index_select(0, order))
        # not _fused: compiled, these passes decoded 5x slower on an H100 (0.28 against 1.40 MP/s, 18
        # photos; cause not found yet), where the encoder's compiled lockstep gained 27 %
        return _lane_passes(self.x, self.at, self.words_here, *self.current, tables, self.n_passes, self.n_lanes)

    def finish(self):
        end = torch.from_numpy(self.end).to(self.x.device)
        if not bool(((self.x[:-1] == rans.LOW).all() & (self.at[:-1] == end).all()).item()):
            raise ValueError("a stream does not decode to its end exactly")


def _lane_passes(x, at, words, order, lane, tile, first, pass_id, tables, n_passes: int, n_lanes: int):
    """_DeviceLanes' passes over one wavefront laid out pass by pass (`order`, `lane`, `tile`,
    `first`, `pass_id`: see layout), given its tables in that order: the symbols in wavefront order.
    The lane states `x` and the streams' read positions `at` advance in place."""
    last_word = len(words) - 1
    symbols = torch.zeros_like(order)
    for p in range(n_passes):
        here = pass_id == p
        lanes = torch.where(here, lane, n_lanes)
        sym, state, need = rans.decode_step(x[lanes], tables)
        need = need & here
        reads = need.to(torch.int64)
        before = reads.cumsum(0) - reads                # reads before this one in the pass...
        pos = at[tile] + before - before[first]         # ...from its own tile's stream
        word = words[pos.clamp_(0, last_word)]
        x[lanes] = torch.where(need, (state << rans.WORD_BITS) | word, state)
        at.index_add_(0, tile, reads)
        symbols = torch.where(here, sym, symbols)
    return torch.empty_like(symbols).index_copy_(0, order, symbols)


FUSED = {"compiled": 0, "failed": 0, "error": ""}     # for benchmarks: did torch.compile run?
_fused_cache: dict = {}


def _fused(fn):
    """`fn` compiled by torch.compile when PIXZIP_COMPILE=1 (on a GPU, Triton kernels: the encoder's
    lockstep step, a dozen small kernels, fuses into a few), else `fn` itself. Integer arithmetic, so
    any fusion computes the same integers; if compiling fails, `fn` runs as it is (FUSED says so)."""
    if os.environ.get("PIXZIP_COMPILE", "0") != "1":
        return fn
    if fn not in _fused_cache:
        compiled = torch.compile(fn, dynamic=True)
        state = {"use": compiled, "proven": False}

        def run(*args):
            if state["proven"] or state["use"] is fn:     # after a first success, errors are real errors
                return state["use"](*args)
            try:                        # the first call compiles, before anything runs
                result = compiled(*args)
            except Exception as e:      # noqa: BLE001 - any backend failure: run the plain function
                _record_failure(FUSED, e)
                state["use"] = fn
                return fn(*args)
            state["proven"] = True
            FUSED["compiled"] = 1
            return result
        _fused_cache[fn] = run
    return _fused_cache[fn]


def _lanes_on_device(model) -> bool:
    """Format v3's lanes run on the GPU with the network (`_DeviceLanes`; PixelCNN models, as the
    graphs), unless PIXZIP_DEVICE_LANES=0."""
    return model.device.type == "cuda" and os.environ.get("PIXZIP_DEVICE_LANES", "1") != "0" \
        and isinstance(model, IntPixelCNN) and not model.cfg.cond


def wavefront_decode(model, height: int, width: int, tile: int, choose, progress=None,
                     max_pixels: int = MAX_BATCH_PIXELS, dtype: torch.dtype = torch.int32) -> np.ndarray:
    """decode_tiles for one plane; `choose` gets tile numbers (a multi-scale model: the small
    image's stage first, its tiles numbered from -1 down)."""
    conds = None
    if isinstance(model, IntMultiScale):
        check_tile(model, tile)
        small = wavefront_decode(model.small, *model.small_shape(height, width), tile,
                                 lambda n, f, w: choose(-1 - n, f, w), None, max_pixels, dtype)
        model, conds = model.big, {}
    grid = tile_grid(height, width, tile)
    if conds is not None:
        conds = {n: _small_part(small, y, x, h, w, model.cfg.scale) for n, (y, x, h, w) in enumerate(grid)}
    parts = decode_tiles(model, [(n, h, w) for n, (_, _, h, w) in enumerate(grid)], choose, progress,
                         max_pixels, dtype, conds)
    return _assemble(height, width, model.cfg.channels, grid, parts, key=lambda n: n)


def _small_part(small: np.ndarray, y: int, x: int, h: int, w: int, s: int) -> np.ndarray:
    """The subsampled pixels of the full-resolution region (y, x, h, w); y and x are multiples of s."""
    return small[y // s:-(-(y + h) // s), x // s:-(-(x + w) // s)]


def _assemble(height, width, channels, grid, parts: dict, key) -> np.ndarray:
    plane = np.zeros((height, width, channels), dtype=np.uint8)
    for n, (y, x, h, w) in enumerate(grid):
        plane[y:y + h, x:x + w] = parts[key(n)]
    return plane


def decode_plane(model: IntModel, height: int, width: int, tile: int, streams: list[np.ndarray],
                 progress: Callable[[int], None] | None = None,
                 max_pixels: int = MAX_BATCH_PIXELS, workers: int = 1, coder: str = "rans") -> np.ndarray:
    """Inverse of encode_plane. Raises ValueError if the streams do not match the tile grid."""
    return decode_planes(model, [(height, width)], tile, [streams], progress, max_pixels, workers, coder=coder)[0]


def decode_planes(model, shapes: list[tuple[int, int]], tile: int,
                  streams: list[list[np.ndarray]], progress: Callable[[int], None] | None = None,
                  max_pixels: int = MAX_BATCH_PIXELS, workers: int = 1, device=None,
                  coder: str = "rans") -> list[np.ndarray]:
    """Inverse of encode_planes: the tiles of all planes decode together on shared canvases.

    With workers > 1 (and enough pixels), groups of tiles decode in parallel processes; tiles are
    independent streams, so the grouping never changes the pixels. A multi-scale model decodes the
    small images first, then the full ones conditioned on them."""
    if len(streams) != len(shapes) or any(len(s) != stream_count(model, h, w, tile)
                                          for s, (h, w) in zip(streams, shapes)):
        raise ValueError("stream count does not match the tile grid")
    check_coder(model, coder)
    model, max_pixels = placed(model, device, max_pixels)
    smalls = None
    if isinstance(model, IntMultiScale):
        check_tile(model, tile)
        small_shapes = [model.small_shape(h, w) for h, w in shapes]
        counts = [stream_count(model.small, h, w, tile) for h, w in small_shapes]
        smalls = decode_planes(model.small, small_shapes, tile, [s[:n] for s, n in zip(streams, counts)],
                               None, max_pixels, workers, coder=coder)
        streams = [s[n:] for s, n in zip(streams, counts)]
        model = model.big
    grids = [tile_grid(h, w, tile) for h, w in shapes]
    jobs = [((k, n), h, w) for k, g in enumerate(grids) for n, (_, _, h, w) in enumerate(g)]
    tile_streams = {(k, n): streams[k][n] for k, g in enumerate(grids) for n in range(len(g))}
    conds = None if smalls is None else {(k, n): _small_part(smalls[k], y, x, h, w, model.cfg.scale)
                                          for k, g in enumerate(grids) for n, (y, x, h, w) in enumerate(g)}
    workers = min(workers, len(jobs)) if model.device.type == "cpu" else 1   # a GPU: its one process
    if coder == "rans" and conds is None and native.supports(model):     # threads: no process start-up
        parts = _decode_native(model, jobs, [tile_streams[key] for key, _, _ in jobs], progress, workers)
    elif workers <= 1 or sum(h * w for h, w in shapes) < PARALLEL_MIN_PIXELS:
        parts = _decode_streams(model, jobs, [tile_streams[key] for key, _, _ in jobs], max_pixels, progress, conds,
                                coder)
    else:
        parts = {}
        for g, result in _in_workers(workers, jobs, lambda g: (_decode_streams, (
                model, g, [tile_streams[key] for key, _, _ in g], max_pixels, None,
                None if conds is None else {key: conds[key] for key, _, _ in g}, coder))):
            parts.update(result)
            if progress:
                progress(sum(h * w for _, h, w in g))
    C = model.cfg.channels
    return [_assemble(h, w, C, g, parts, key=lambda n, k=k: (k, n)) for k, ((h, w), g) in enumerate(zip(shapes, grids))]


PARALLEL_MIN_PIXELS = 1 << 17
# The encoder's pass already uses every core through torch's threads; worker processes pay off only
# for large images (measured on 2 cores: 768x512 1.7 s either way, 2048x1536 14.8 s -> 12.2 s).
ENCODE_PARALLEL_MIN_PIXELS = 1 << 20


def _decode_streams(model, jobs, streams, max_pixels, progress=None, conds=None, coder="rans") -> dict:
    """Entropy-decode the tiles `jobs` (key, h, w) from their streams (same order)."""
    if coder == "rans":
        if conds is None and native.supports(model):
            return _decode_native(model, jobs, streams, progress)    # (one worker's share)
        lanes = _DeviceLanes if _lanes_on_device(model) else _LaneDecoder
        return decode_tiles(model, jobs, lanes(model, {key: s for (key, _, _), s in zip(jobs, streams)}),
                            progress, max_pixels, conds=conds)
    decoders = {key: constriction.stream.queue.RangeDecoder(s) for (key, _, _), s in zip(jobs, streams)}

    def choose(key, freq, where):
        try:
            return decoders[key].decode(FAMILY, freq.numpy())
        except AssertionError:      # constriction's word for "this stream is not a valid range code"
            raise ValueError("undecodable range-coded stream") from None

    return decode_tiles(model, jobs, choose, progress, max_pixels, dtype=torch.float64, conds=conds)


def _decode_native(model, jobs, streams, progress=None, workers: int = 1) -> dict:
    """Format v3 tiles decoded by the native decoder, one call per tile, in `workers` threads (the call
    releases the GIL): the same pixels as decode_tiles with a _LaneDecoder (pixzip/native.py).
    Raises ValueError for a corrupt stream."""
    def one(job, stream):
        (_, h, w), stream = job, np.asarray(stream)
        states, used = _unpack_states(stream, lanes_per_tile(h, w, model.slope))
        return native.decode_tile(model, states, stream[used:], h, w)

    out = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for (key, h, w), pixels in zip(jobs, pool.map(one, jobs, streams)):
            out[key] = pixels
            if progress:
                progress(h * w)
    return out


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent handles Ctrl-C and stops the workers
    # ...with SIGTERM, which must end a worker silently (the fork server may have imported the CLI,
    # whose start-up handler reports an interruption)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool(workers: int, initializer=_ignore_sigint, initargs=()):
    """Worker processes from a fork server (torch's OpenMP state is not fork-safe; spawn would re-import
    torch in every worker). The server preloads this module once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pixzip.codec"])
    return ctx.Pool(workers, initializer=initializer, initargs=initargs)
