"""Entropy stage 1 (format v4): a plane's tiles coded by the adaptive stage (entropy/adaptive.py), in the
compiled coder (backends/native.py) where it runs the model, else by the reference on the torch engine's
outputs. The codec (backends/codec.py) stays the one door for what runs where; this module asks it."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from ..entropy import adaptive, lz
from ..entropy.value_map import ValueMap
from ..errors import PixzipError
from ..formats.container import LZ_TILE, STORED_TILE, frame, unframe_tile
from ..formats.stored import pack_bits, stored_size, unpack_bits
from ..formats.tiles import assemble, coding_order, tile_grid
from ..formats.transforms.palette import colour_keys
from ..nets.record import NetRecord
from . import native
from .codec import ENSEMBLE_NEEDS_NATIVE, MAX_BATCH_PIXELS, _is_ensemble, network

# A plane coded by the adaptive stage has one framed byte stream per tile (formats.container.frame). Up to
# level 8 each is coded with a fresh state; from level 9 (Level.chained) the tiles form a few chains
# (adaptive.chains: tile n continues the state tile n - K left, K >= 2), each coded in turn by one thread.
# Tiles or chains encode and decode in threads, and the bytes never depend on the thread count. A tile whose
# samples bit-packed are smaller than its coded bytes is stored instead (uniform noise), so no tile costs more
# than raw + 4 bytes; in a chain the state has still learned it, so the decoder replays it through the stage.
# Tiles that one LZMA2 stream codes in fewer bytes (text beside a photograph) hand their samples to it
# (entropy/lz.py, "LZ tiles"): the first such tile's frame holds the stream; in a chain they are replayed too.
# A levels plane may be coded in value space (entropy stage 4, entropy/value_map.py): its tiles hold ranks, the
# network reads their values (`vmaps`: per plane a ValueMap, or None for a plane coded as it is).

# Every sub-pixel codes its zero flag at a probability clamped to at most 4095/4096 (entropy.adaptive):
# the fewest bits a sub-pixel can cost, the floor the decoder holds a stream's length to
ADAPTIVE_MIN_BITS = float(np.log2(4096 / 4095))


def adaptive_refusal(model) -> str | None:
    """Why the adaptive stage cannot code `model`'s planes, in one line (None: it can). It takes a
    PixelCNN's Laplace prediction (mu, scale), or an ensemble's members' averaged (the native coder
    only); LSTM and multi-scale models are coded by the static stage instead (docs/ADAPTIVE.md)."""
    if _is_ensemble(model):
        whys = [adaptive_refusal(m) for m in model.members]
        if any(whys):
            return next(w for w in whys if w)
        if not _members_share_tables(model):
            return "the adaptive stage takes an ensemble whose members share their Laplace tables only"
        return None
    if model.cfg.arch != "pixelcnn" or model.cfg.head != "laplace" or model.cfg.levels != 256 \
            or model.cfg.cond or model.slope < 2:
        return "the adaptive stage codes PixelCNN models with a Laplace head and a slope of 2 or more only"
    return None


def _members_share_tables(model) -> bool:
    """Whether an ensemble's members have the same Laplace prefix sums (megabytes each: compared once per
    record, which keeps the answer in its cache)."""
    cache = getattr(model, "_cache", None)
    if cache is not None and "members_share_tables" in cache:
        return cache["members_share_tables"]
    first = _cdf(model.members[0])
    same = all(np.array_equal(first, _cdf(m)) for m in model.members[1:])
    if cache is not None:
        cache["members_share_tables"] = same
    return same


def adaptive_native(model) -> bool:
    """Whether the compiled adaptive stage codes this model's tiles (else the Python reference does)."""
    return native.supports(model) and native.adaptive_available()


def _cdf(model) -> np.ndarray:
    """The Laplace rows' prefix sums the stage reads (an ensemble's members share them: adaptive_refusal)."""
    if _is_ensemble(model):
        model = model.members[0]
    return model.laplace_prefix() if isinstance(model, NetRecord) else model._laplace_prefix().numpy()


def _reference_network(model):
    """The torch network whose outputs the reference stage takes, where the compiled coder does not run the
    model (an ensemble runs only there: refused in one line)."""
    if _is_ensemble(model):
        raise PixzipError(ENSEMBLE_NEEDS_NATIVE)
    return network(model)


def _chains(level: int, n_tiles: int) -> list[list[int]]:
    """The tiles (indices in raster order) that share one state, each list in its coding order."""
    return adaptive.chains(n_tiles) if adaptive.LEVELS[level].chained else [[n] for n in range(n_tiles)]


def _chain_state(model, level: int, grid: list, chain: list[int], channels: int, in_native: bool):
    """The state a chain of several tiles shares, sized for its first tile (the C stage's, or the reference's);
    None for a tile alone, which the stage codes with a fresh state of its own."""
    if len(chain) < 2:
        return None
    lv, (_, _, h, w) = adaptive.level_for(level, model), grid[chain[0]]
    return native.AdaptiveState(lv, h * w * channels) if in_native else adaptive.State(lv, h * w * channels)


def _code_tile(model, pixels: np.ndarray, level: int, in_native: bool, state, vmap: ValueMap | None = None,
               threads: int = 1) -> bytes:
    """The adaptive stage's bytes for a tile of known pixels (`state`: a chain's, or None for a fresh one;
    `vmap`: the pixels are ranks and the network reads their values; `threads`: an ensemble's members' passes)."""
    if in_native:
        return native.encode_tile_adaptive(model, pixels, level, state, vmap, threads)
    from . import reference     # the torch engine's outputs (its dense pass), in the decoding order, to the reference
    seen = pixels if vmap is None else vmap.to_values(pixels)
    (_, _, params), = reference.tile_symbols(model, [seen], 0, MAX_BATCH_PIXELS)
    params = params.numpy()
    if vmap is not None:
        h, w, C = pixels.shape
        params = vmap.all_outputs(params, coding_order(h, w, model.slope, C)[2])
    return adaptive.encode_tile(pixels, params, _cdf(model), model.slope, adaptive.level_for(level, model), state,
                                None if vmap is None else vmap.tops)


def _framed(data: bytes, pixels: np.ndarray, bits: int) -> np.ndarray:
    """One tile's framed stream: the adaptive stage's bytes, or the samples stored where smaller."""
    if stored_size(pixels.size, bits) < len(data):
        return frame(pack_bits(pixels, bits), stored=True)
    return frame(data)


def _one_tile_trial(model, pixels: np.ndarray, levels: tuple[int, ...], in_native: bool,
                    vmap: ValueMap | None, threads: int = 1) -> list[bytes]:
    """A plane of one tile coded at each of `levels` with a fresh state (one network pass in the compiled
    coder; its members' passes, then the levels' streams, in `threads` threads)."""
    if not in_native:
        return [_code_tile(model, pixels, level, False, None, vmap) for level in levels]
    n = pixels.size
    return native.encode_tile_adaptive_states(
        model, pixels, [native.AdaptiveState(adaptive.level_for(level, model), n) for level in levels], vmap, threads)


def busiest_window(plane: np.ndarray, side: int, where: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the plane's window of side x side pixels (or the plane's height or width where
    smaller), on a grid of that step, with the most pixels that differ from their left or upper neighbour (of those
    `where` holds, if given): the first such in raster order. In a photograph its most textured part, in a chart
    its lines and text."""
    h, w, channels = plane.shape
    bh, bw = min(side, h), min(side, w)
    pixel = colour_keys(plane.reshape(-1, channels)).reshape(h, w)      # one comparison a pixel
    changes = np.zeros((h, w), dtype=np.int32)
    changes[:, 1:] += pixel[:, 1:] != pixel[:, :-1]
    changes[1:, :] += pixel[1:] != pixel[:-1]
    if where is not None:
        changes *= where
    nh, nw = h // bh, w // bw
    k = int(np.argmax(changes[:nh * bh, :nw * bw].reshape(nh, bh, nw, bw).sum(axis=(1, 3))))
    return k // nw * bh, k % nw * bw, bh, bw


def sample_sizes(model, plane: np.ndarray, levels: tuple[int, ...], side: int, vmap: ValueMap | None = None,
                 where: np.ndarray | None = None) -> list[int]:
    """The stage's bytes for the plane's busiest window (busiest_window, of the pixels `where` holds) at each of
    `levels`, fresh states, one network pass (none where every level is classical): a cheap look at whether another
    level pays on a plane."""
    i, j, bh, bw = busiest_window(plane, side, where)
    window = np.ascontiguousarray(plane[i:i + bh, j:j + bw])
    return [len(b) for b in _one_tile_trial(model, window, levels, adaptive_native(model), vmap)]


def _with_lz_tiles(plane: np.ndarray, grid: list, streams: list[np.ndarray], hard: bool) -> list[np.ndarray]:
    """A plane's framed tiles, with those that one LZMA2 stream codes in fewer bytes handed to it
    (lz.tile_candidates, lz.encode_tiles): the first of them holds the stream, the others are empty frames.
    Only where that is strictly smaller than their frames so far; a plane of one tile is left alone (the
    whole-plane LZ stage covers it)."""
    if len(grid) < 2:
        return streams
    tiles = [plane[y:y + h, x:x + w] for y, x, h, w in grid]      # views: only the tiles tried are copied
    budgets = [4 * s.size for s in streams]
    chosen = lz.tile_candidates(tiles, budgets)
    if not chosen:
        return streams
    framed = [frame(lz.encode_tiles(tiles, chosen, hard), lz=True)] + [frame(b"", lz=True)] * (len(chosen) - 1)
    if sum(4 * f.size for f in framed) >= sum(budgets[n] for n in chosen):
        return streams
    out = list(streams)
    for n, f in zip(chosen, framed):
        out[n] = f
    return out


def encode_planes_adaptive(model, planes: list[np.ndarray], tile: int, level: int, bits: list[int],
                           progress: Callable[[int], None] | None = None, threads: int = 1,
                           vmaps: list[ValueMap | None] | None = None,
                           lz_tiles: bool | None = None) -> list[tuple[list[np.ndarray], float]]:
    """Entropy stage 1 (or 4, where `vmaps` gives a plane a ValueMap): per plane, its tiles' framed streams
    and their bits (reporting). `bits`: each plane's stored sample width (its values are below 2^bits). The
    native coder runs tiles in `threads` threads (the calls release the GIL); without it, the reference
    stage on the torch engine's outputs. `lz_tiles`: None codes every tile in the stage, else tiles may go to
    an LZ stream compressed hard (True) or fast (False)."""
    return [codings[0][1:] for codings in encode_planes_trial(model, planes, tile, (level,), bits, progress, threads,
                                                              vmaps, lz_tiles)]


def encode_planes_trial(model, planes: list[np.ndarray], tile: int, levels: tuple[int, ...], bits: list[int],
                        progress: Callable[[int], None] | None = None, threads: int = 1,
                        vmaps: list[ValueMap | None] | None = None,
                        lz_tiles: bool | None = None) -> list[list[tuple[int, list[np.ndarray], float]]]:
    """encode_planes_adaptive at levels[0], and a plane of one tile at each of the other levels too (on the
    same network pass): per plane, its codings as (level, framed streams, bits), levels[0]'s first."""
    level = levels[0]
    vmaps = vmaps or [None] * len(planes)
    why = adaptive_refusal(model)
    if why:
        raise PixzipError(why)
    in_native = adaptive_native(model)
    if not in_native:
        model = _reference_network(model)
    grids = [tile_grid(p.shape[0], p.shape[1], tile) for p in planes]
    jobs = [(k, chain) for k, g in enumerate(grids) for chain in _chains(level, len(g))]
    workers = max(1, min(threads, len(jobs)) if in_native else 1)
    inner = max(1, threads // workers) if in_native else 1     # fewer chains than threads: within their tiles

    def one(job):           # a chain's tiles in turn, one state (a single tile: a fresh one); [[stream]] per level
        k, chain = job
        if len(grids[k]) == 1 and len(levels) > 1:
            pixels = planes[k]
            return [[_framed(data, pixels, bits[k])]
                    for data in _one_tile_trial(model, pixels, levels, in_native, vmaps[k], inner)]
        state, out = _chain_state(model, level, grids[k], chain, planes[k].shape[2], in_native), []
        for n in chain:
            y, x, h, w = grids[k][n]
            pixels = np.ascontiguousarray(planes[k][y:y + h, x:x + w])
            out.append(_framed(_code_tile(model, pixels, level, in_native, state, vmaps[k], inner), pixels, bits[k]))
        return [out]

    streams = [{level: [None] * len(g)} for g in grids]      # per plane: level -> its tiles' framed streams
    with ThreadPoolExecutor(workers) as threads_pool:
        for (k, chain), coded in zip(jobs, threads_pool.map(one, jobs)):
            for n, stream in zip(chain, coded[0]):
                streams[k][level][n] = stream
                if progress:
                    progress(grids[k][n][2] * grids[k][n][3])
            streams[k].update(zip(levels[1:], coded[1:]))       # a plane of one tile at the other levels
    if lz_tiles is not None:
        for k, plane in enumerate(planes):
            streams[k][level] = _with_lz_tiles(plane, grids[k], streams[k][level], lz_tiles)
    return [[(lv, s, 32.0 * sum(x.size for x in s)) for lv, s in plane.items()] for plane in streams]


_NOTICE_GIVEN = []


def _slow_notice():
    """Once per process: the reference stage decodes adaptive files, correctly but slowly."""
    if not _NOTICE_GIVEN:
        _NOTICE_GIVEN.append(True)
        print("pixzip: no compiled adaptive coder here; decoding with the Python reference (slow)", file=sys.stderr)


class _AdaptiveDecider:
    """wavefront.decode_tiles' decider for adaptive tiles: each tile's reference decoder takes the
    network's (mu16, idx) of its next sub-pixel (the order per tile is the stage's: wavefront, channel,
    row). ValueError at the end of a batch unless every stream was used exactly."""

    def __init__(self, model, payloads: dict, level: int, states: dict, vmaps: list):
        self.model, self.payloads, self.cdf = model, payloads, _cdf(model)
        self.level, self.states, self.vmaps = adaptive.level_for(level, model), states, vmaps

    def begin(self, batch, tiles: np.ndarray, ii: np.ndarray, t: np.ndarray):
        C, slope = self.model.cfg.channels, self.model.slope
        self.tile_vmaps = [self.vmaps[key[0]] for key, _, _, _, _ in batch]
        self.decoders = [adaptive.TileDecoder(self.payloads[key], h, w, C, self.cdf, slope, self.level,
                                              self.states.get(key), None if vmap is None else vmap.tops)
                         for (key, _, _, h, w), vmap in zip(batch, self.tile_vmaps)]
        self.tiles = tiles

    def step(self, params, s: int, e: int, c: int) -> np.ndarray:
        """The values the network reads next: the decoded samples (a value-space plane: their ranks' values)."""
        params = np.asarray(params.cpu())
        out = []
        for n in range(s, e):
            tile, mu16, idx = self.tiles[n], int(params[n - s, 0]), int(params[n - s, 1])
            vmap = self.tile_vmaps[tile]
            if vmap is None:
                out.append(self.decoders[tile].step(mu16, idx))
                continue
            rank = self.decoders[tile].step(*vmap.outputs(mu16, idx, c))
            if rank >= len(vmap.values[c]):
                raise ValueError("adaptive stream: a rank the levels do not have (corrupt data)")
            out.append(int(vmap.values[c][rank]))
        return np.array(out, dtype=np.int64)

    def finish(self):
        for d in self.decoders:
            d.finish()


def _decode_in_reference(model, grids, chains, coded: dict, parts: dict, level: int, progress, vmaps: list) -> None:
    """The reference stage on the torch engine's outputs, in rounds: round r decodes the r-th tile of every
    chain in one batch of the wavefront walk (each with its chain's state), and replays the stored ones."""
    from . import wavefront
    _slow_notice()
    C = model.cfg.channels
    states = {}
    for r in range(max(len(chain) for _, chain in chains)):
        jobs, payloads = [], {}
        for k, chain in chains:
            if r >= len(chain):
                continue
            key, (h, w) = (k, chain[r]), grids[k][chain[r]][2:]
            if len(chain) > 1:          # the chain's state passes from its previous tile to this one
                states[key] = (states.pop((k, chain[r - 1])) if r
                               else _chain_state(model, level, grids[k], chain, C, False))
            if key in coded:
                jobs.append((key, h, w))
                payloads[key] = coded[key][0]
            elif key in states:
                _code_tile(model, parts[key], level, False, states[key], vmaps[k])
        if jobs:
            decider = _AdaptiveDecider(model, payloads, level, states, vmaps)
            for key, pixels in wavefront.decode_tiles(model, jobs, decider, progress, MAX_BATCH_PIXELS).items():
                parts[key] = pixels if vmaps[key[0]] is None else vmaps[key[0]].to_ranks(pixels)


def _lz_tiles(payloads: dict[int, bytes], grid: list, channels: int, bits: int) -> dict[int, np.ndarray]:
    """A plane's LZ tiles (index -> framed payload, the first holding the stream, the others empty) decoded:
    index -> pixels. ValueError where the stream is not exactly their samples, or a sample needs more than the
    plane's stored width (as a stored tile could not hold it)."""
    order = sorted(payloads)
    if any(payloads[n] for n in order[1:]):
        raise ValueError("LZ tiles: a stream in a tile after the first")
    tiles = lz.decode_tiles(payloads[order[0]], [(grid[n][2], grid[n][3], channels) for n in order])
    if any(int(t.max()) >> bits for t in tiles):
        raise ValueError("LZ tiles: a sample beyond the plane's stored width")
    return dict(zip(order, tiles))


# How much of `threads` times one thread's speed a tile's walk reaches with its wavefronts split between them
# (native.decode_tile_adaptive; two cores, a 481x321 CBSD68 tile, tests/bench in docs/ENGINE.md): an ensemble's
# networks run beside the stage, 1.8x on two threads; one network leaves the stage, which is one sequence,
# most of the time: 1.2x.
INNER_EFFICIENCY = {True: 0.9, False: 0.6}


def decode_threads(sizes: list[int], threads: int, ensemble: bool) -> tuple[int, int]:
    """(chains decoded at once, threads within each tile) for chains of `sizes` coded pixels on `threads`
    threads: chains side by side, one thread each, unless the largest would keep the others waiting longer
    than splitting every tile's wavefronts costs (a photograph of one or two unequal tiles). Speed only: the
    pixels are the same either way."""
    threads, busy = max(1, threads), [s for s in sizes if s] or [0]
    if len(busy) < threads:
        return max(1, len(busy)), max(1, threads // len(busy))
    total, largest = sum(busy), max(busy)
    if threads > 1 and largest * threads * INNER_EFFICIENCY[ensemble] > total:
        return 1, threads
    return threads, 1


def decode_planes_adaptive(model, shapes: list[tuple[int, int]], tile: int, streams: list[list[np.ndarray]],
                           level: int, bits: list[int], progress: Callable[[int], None] | None = None,
                           threads: int = 1, vmaps: list[ValueMap | None] | None = None) -> list[np.ndarray]:
    """Inverse of encode_planes_adaptive. ValueError (or FormatError) for a corrupt stream."""
    vmaps = vmaps or [None] * len(shapes)
    why = adaptive_refusal(model)
    if why:
        raise ValueError(why)
    grids = [tile_grid(h, w, tile) for h, w in shapes]
    if any(len(s) != len(g) for s, g in zip(streams, grids)) or len(streams) != len(shapes):
        raise ValueError("stream count does not match the tile grid")
    C = model.cfg.channels
    parts, coded = {}, {}
    for k, g in enumerate(grids):
        in_lz = {}
        for n, (_, _, h, w) in enumerate(g):
            payload, kind = unframe_tile(streams[k][n])
            if kind == STORED_TILE:
                try:
                    parts[(k, n)] = unpack_bits(payload, (h, w, C), bits[k])
                except PixzipError as e:
                    raise ValueError(str(e)) from None
            elif kind == LZ_TILE:
                in_lz[n] = payload
            else:
                coded[(k, n)] = (payload, h, w)
        if in_lz:
            parts.update(((k, n), pixels) for n, pixels in _lz_tiles(in_lz, g, C, bits[k]).items())
    chains = [(k, chain) for k, g in enumerate(grids) for chain in _chains(level, len(g))]
    if adaptive_native(model):
        sizes = [sum(grids[k][n][2] * grids[k][n][3] for n in chain if (k, n) in coded) for k, chain in chains]
        workers, inner = decode_threads(sizes, threads, _is_ensemble(model))

        def one(job):       # a chain's tiles in turn, one state; a stored tile is replayed through it
            k, chain = job
            state, out = _chain_state(model, level, grids[k], chain, C, True), []
            for n in chain:
                h, w = grids[k][n][2:]
                if (k, n) in coded:
                    out.append(native.decode_tile_adaptive(model, coded[(k, n)][0], h, w, level, state, vmaps[k],
                                                           inner))
                else:
                    out.append(parts[(k, n)])
                    if state is not None:
                        _code_tile(model, out[-1], level, True, state, vmaps[k], inner)
            return out

        with ThreadPoolExecutor(workers) as threads_pool:
            for (k, chain), tiles in zip(chains, threads_pool.map(one, chains)):
                for n, pixels in zip(chain, tiles):
                    parts[(k, n)] = pixels
                    if progress:                     # every tile: coded, replayed, stored or from the LZ stream
                        progress(pixels.shape[0] * pixels.shape[1])
    else:
        uncoded = sum(pixels.shape[0] * pixels.shape[1] for pixels in parts.values())
        if coded:
            _decode_in_reference(_reference_network(model), grids, chains, coded, parts, level, progress, vmaps)
        if progress and uncoded:                     # the walk counts the coded tiles; stored and LZ tiles here
            progress(uncoded)
    return [assemble(h, w, C, g, parts, key=lambda n, k=k: (k, n)) for k, ((h, w), g) in enumerate(zip(shapes, grids))]
