"""Entropy coding of image planes with an integer model: the one door to the backends.

`choose` is the only place that asks what can run where (the native C coder, the torch reference on
the CPU or a GPU, the rANS lanes on the device, CUDA graphs, worker processes); every entry point below
asks it, then drives the backend it names. Formats: "rans" (format v3, `entropy.rans` lanes, the tile
grid and coding order of `formats.tiles`) and "range" (versions 1-2, constriction's range coder).

The encoder evaluates the model once over every pixel of a batch of tiles; the decoder walks the
wavefronts of a batch of tiles together. Both run the same layer code and the same integer tables, so
the bytes never depend on the backend, the batch or the number of workers.

Importing this module imports no torch: a model is a numpy record (`nets.record`, what a model file
loads into) or a torch integer network, and the native coder codes a record as it is. The torch
backends (`reference`, `wavefront`, `gpu`, `pool`) and the range coder are imported where a path that
needs them is taken, and a record gets its torch network there (`network`); without torch that is one
line naming the fix (`errors.torch_missing`).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np

from ..entropy import lz
from ..entropy.lanes import pack_states, unpack_states
from ..errors import PixzipError, torch_missing
from ..formats.container import frame, unframe
from ..formats.stored import pack_bits, unpack_bits
from ..formats.tiles import PASSES, assemble, crop, lanes_per_tile, small_part, tile_grid
from ..nets.record import RECORDS
from . import native

# the torch backends' names this module serves, imported on first access (module __getattr__)
_LAZY = {"GRAPH_STATS": ("gpu", "GRAPH_STATS"), "_DeviceLanes": ("gpu", "_DeviceLanes"),
         "encode_lanes_here": ("gpu", "encode_lanes_here"),
         "_load_batch": ("reference", "load_batch")}      # (tests fill canvases through the door)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["CODERS", "PASSES", "GRAPH_STATS", "MAX_BATCH_PIXELS", "Choice", "choose", "coding_device", "placed",
           "codes_here", "check_coder", "check_tile", "stream_count", "stream_shapes", "lanes_per_tile", "tile_grid",
           "encoder_tables", "tile_symbols", "encode_planes", "encode_plane", "decode_planes", "decode_plane",
           "wavefront_decode", "stored_plane_stream", "stored_plane"]

CODERS = ("rans", "range")    # format version 3, versions 1-2
MAX_BATCH_PIXELS = 1 << 20     # tiles coded together at most; bounds memory, never changes the bits
MAX_BATCH_PIXELS_CUDA = 1 << 23     # on a GPU (about 2 GB of canvas): wider steps, the same bits
CODER_SYMBOLS = 1 << 21    # symbols coded in one lockstep at most (~70 bytes each): bounds the coder's memory, not the bits;
# a lockstep costs per step whatever its width, so a 768x512 photo (1.2 M symbols) is one group, not two
CODER_SYMBOLS_HERE = 1 << 24    # the same on a GPU (~60 bytes each there): a whole canvas of 768x512 photos
PARALLEL_MIN_PIXELS = 1 << 17
# The encoder's pass already uses every core through torch's threads; worker processes pay off only
# for large images (measured on 2 cores: 768x512 1.7 s either way, 2048x1536 14.8 s -> 12.2 s).
ENCODE_PARALLEL_MIN_PIXELS = 1 << 20


# -- what runs where ---------------------------------------------------------------------------------
_THREADS = [0]          # -T: torch's thread count, applied when a torch path is first taken


def configure(device: str, threads: int = 0, decoding: bool = False) -> str:
    """Apply a thread count (torch's, now if it is imported, else when a torch path first runs; the
    native coder takes its threads from the caller) and resolve a device name: "cuda" must exist (and
    needs torch), "auto" decodes on the CPU (a GPU decode is ~1 100 sequential sub-steps of small
    kernels whatever the batch: 0.9-1.4 MP/s for batches of 7-18 photos on an H100, while the CPU
    decodes tiles on every core) and leaves encoding to `coding_device`: a GPU only for models the
    native CPU coder does not run."""
    if threads:
        _THREADS[0] = threads
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    if device == "cuda" and not _torch("--device cuda").cuda.is_available():
        raise PixzipError("--device cuda: no CUDA device is available (use --device cpu)")
    if device == "auto":
        return "cpu" if decoding else "auto"
    return device


def _torch(what: str):
    """torch, imported here (PixzipError naming the fix where it is not installed)."""
    try:
        import torch
    except ImportError as e:
        if (e.name or "torch").split(".")[0] != "torch":
            raise
        raise torch_missing(what) from None
    if _THREADS[0]:
        torch.set_num_threads(_THREADS[0])
        _THREADS[0] = 0
    return torch


def network(model):
    """The torch integer network a torch path runs: the model itself where it is one, a record's built
    from its arrays (once). Without torch: one line saying what needed it and how to install it."""
    if not isinstance(model, RECORDS):
        return model
    arch = "ensemble" if hasattr(model, "members") else model.cfg.arch
    if arch not in ("pixelcnn", "ensemble"):
        what = f"the {arch} architecture"
    elif not native.available():
        what = "coding without pixzip's compiled coder (not built in this installation, or PIXZIP_NATIVE=0)"
    else:
        what = "the torch path (for the models the compiled coder does not run)"
    _torch(what)
    from ..nets.modelfile import network as build
    return build(model, what)


def coding_threads() -> int:
    """Threads for the native coder where the caller names none: torch's where it is imported (a
    caller's set_num_threads), else the CPUs this process may run on."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:           # not on Linux
        return os.cpu_count() or 1


def _is_ensemble(model) -> bool:
    return hasattr(model, "members")


def _is_multiscale(model) -> bool:
    return model.cfg.arch == "multiscale"


def _on_cpu(model) -> bool:
    device = getattr(model, "device", None)        # a torch network's; a record is on the CPU
    return device is None or device.type == "cpu"


class Choice(NamedTuple):
    """Where a (placed) model's tiles are coded."""
    native: bool        # the native C coder walks the tiles (format v3), or makes the encoder's head outputs
    lanes_here: bool    # format v3's rANS lanes run on the model's device (a GPU)
    graphs: bool        # the decoder's steps replay as CUDA graphs


def choose(model, coder: str = "rans", conditioned: bool = False) -> Choice:
    """The one place that asks what can run where, for a model already placed on its device."""
    return Choice(native=not conditioned and native.supports(model),
                  lanes_here=coder == "rans" and _lanes_on_device(model),
                  graphs=_use_graphs(model))


def _on_gpu_path(model) -> bool:
    """On a GPU, with an architecture the GPU path runs, and no conditioning map (not ported)."""
    return getattr(model, "gpu_path", False) and model.device.type == "cuda" and not model.cfg.cond


def _lanes_on_device(model) -> bool:
    """Format v3's lanes run on the GPU with the network (`gpu._DeviceLanes`; PixelCNN models, as the
    graphs), unless PIXZIP_DEVICE_LANES=0."""
    return _on_gpu_path(model) and os.environ.get("PIXZIP_DEVICE_LANES", "1") != "0"


def _use_graphs(model) -> bool:
    """CUDA graphs for the decoder's steps: on a GPU (PixelCNN models), unless PIXZIP_CUDA_GRAPHS=0."""
    return _on_gpu_path(model) and os.environ.get("PIXZIP_CUDA_GRAPHS", "1") != "0"


def coding_device(model, device):
    """Where `model` runs for a `device` of "cpu", "cuda", "auto" or None: None for the CPU, else a
    torch.device. ValueError for a model the GPU path does not run. "auto" is the CPU for the models
    the native coder runs (on two cores it already codes as fast as the GPU path did on an H100,
    2.3-2.9 MP/s, and a GPU machine has many cores), else a GPU if torch sees one and the model runs
    there. Neither None, "cpu" nor "auto" with a model the native coder runs imports torch."""
    if device == "auto":
        if native.supports(model):
            return None
        net = network(model)
        gpu = getattr(net, "gpu_path", False) and _torch("a GPU").cuda.is_available()
        device = "cuda" if gpu else None
    if device is None or str(device).split(":")[0] == "cpu":
        return None
    from ..nets.base import require_gpu_path
    net = network(model)
    require_gpu_path(net)
    return _torch("--device cuda").device(device)


def placed(model, device, max_pixels: int):
    """(model, max_pixels) for coding on `device` (see coding_device). On a GPU the network runs there,
    in this process, on wider canvases; the coder stays on the CPU. The integers are the same on every
    device (tests/test_gpu.py), so the bytes are too."""
    device = coding_device(model, device)
    if device is None:
        return model, max_pixels
    if max_pixels == MAX_BATCH_PIXELS:
        max_pixels = MAX_BATCH_PIXELS_CUDA
    return network(model).on(device), max_pixels


def codes_here(model) -> bool:
    """Whether this installation codes `model`: every model, but an ensemble only where the native
    coder is installed (it alone runs them)."""
    return not _is_ensemble(model) or native.supports(model)


ENSEMBLE_NEEDS_NATIVE = ("ensemble models need pixzip's native CPU coder, which this installation lacks "
                         "(it is compiled at install when a C compiler is present; PIXZIP_NATIVE=0 turns it off)")


def check_coder(model, coder: str):
    """An ensemble runs only in the native coder (pixzip/csrc/): say so in one line
    where it cannot run, rather than fail inside another path."""
    if _is_ensemble(model):
        if coder != "rans":
            raise PixzipError("ensemble models are coded with format version 3 only")
        if not codes_here(model):
            raise PixzipError(ENSEMBLE_NEEDS_NATIVE)


def check_tile(model, tile: int):
    """A multi-scale model's tiles must start on its subsampling grid."""
    if _is_multiscale(model) and tile % model.cfg.scale:
        raise ValueError(f"the tile size must be a multiple of the model's scale ({model.cfg.scale})")


# -- the streams of a plane ----------------------------------------------------------------------------
def stream_count(model, height: int, width: int, tile: int) -> int:
    """How many streams a plane has, by arithmetic (no tile list is built)."""
    def tiles(height, width):
        return 1 if tile == 0 else -(-height // tile) * -(-width // tile)
    n = tiles(height, width)
    if _is_multiscale(model):            # the small image's stage (never multi-scale itself) first
        n += tiles(*_small_shape(model, height, width))
    return n


def _small_shape(model, height: int, width: int) -> tuple[int, int]:
    """A multi-scale model's subsampled image size (`IntMultiScale.small_shape`), from its config."""
    s = model.cfg.scale
    return -(-height // s), -(-width // s)


def stream_shapes(model, height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """(h, w) of the pixels each of a plane's streams codes, in stream order."""
    grid = [(h, w) for _, _, h, w in tile_grid(height, width, tile)]
    if _is_multiscale(model):
        return [(h, w) for _, _, h, w in tile_grid(*_small_shape(model, height, width), tile)] + grid
    return grid


# -- encoding ------------------------------------------------------------------------------------------
def encoder_tables(model, planes: list[np.ndarray], tile: int, max_pixels: int = MAX_BATCH_PIXELS,
                   dtype=None, conds: list[np.ndarray] | None = None):
    """Yield ((plane, tile number), symbols, head outputs, frequency tables) chunk by chunk, in coding
    order (`reference.encoder_tables`, on the backend `choose` names). `dtype`: the tables' torch dtype
    (None: int32)."""
    model = network(model)
    from . import reference
    in_native = choose(model, conditioned=conds is not None).native
    dtype = _torch("the frequency tables").int32 if dtype is None else dtype
    yield from reference.encoder_tables(model, planes, tile, max_pixels, dtype, conds, in_native)


def tile_symbols(model, planes: list[np.ndarray], tile: int, max_pixels: int = MAX_BATCH_PIXELS,
                 conds: list[np.ndarray] | None = None):
    """Yield ((plane, tile number), symbols, head outputs (n, D) on the CPU) tile by tile, in coding
    order."""
    model = network(model)
    from . import reference
    in_native = choose(model, conditioned=conds is not None).native
    yield from reference.tile_symbols(model, planes, tile, max_pixels, conds, in_native)


def encode_planes(model, planes: list[np.ndarray], tile: int, progress: Callable[[int], None] | None = None,
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
    grids = [tile_grid(p.shape[0], p.shape[1], tile) for p in planes]
    jobs = [(k, n, t) for k, g in enumerate(grids) for n, t in enumerate(g)]
    workers = min(workers, len(jobs))
    if coder == "rans" and _on_cpu(model) and choose(model, coder).native:      # no torch on this path
        return _encode_native(model, planes, jobs, progress, workers)
    model = network(model)
    from . import pool
    if _is_multiscale(model):
        check_tile(model, tile)
        smalls = [model.subsample(p) for p in planes]
        first = encode_planes(model.small, smalls, tile, None, max_pixels, coder=coder)
        second = _encode_planes(model.big, planes, tile, progress, max_pixels, smalls, coder)
        return [(s1 + s2, b1 + b2) for (s1, b1), (s2, b2) in zip(first, second)]
    large = sum(p.shape[0] * p.shape[1] for p in planes) >= ENCODE_PARALLEL_MIN_PIXELS
    where = choose(model, coder)
    if model.device.type != "cpu":
        return _encode_on_device(model, planes, tile, progress, max_pixels, workers if large else 1, coder)
    if workers <= 1 or not large:
        return _encode_planes(model, planes, tile, progress, max_pixels, coder=coder)
    streams = [[None] * len(g) for g in grids]
    bits = [0.0] * len(planes)
    for g, result in pool.in_workers(workers, jobs, lambda g: (pool.encode_tiles_job, (
            model, [crop(planes[k], t) for k, _, t in g], max_pixels, coder, CODER_SYMBOLS, where.native))):
        for (k, n, (_, _, h, w)), (tile_streams, tile_bits) in zip(g, result):
            streams[k][n] = tile_streams[0]
            bits[k] += tile_bits
            if progress:
                progress(h * w)
    return list(zip(streams, bits))


def _encode_planes(model, planes, tile, progress, max_pixels, conds=None, coder="rans"):
    """Code planes in this process, one batch of tiles after another (`reference.encode_planes`): the
    head outputs from the network's pass, or from the native coder's walk where `choose` says it runs
    the model; the streams from the reference coders."""
    from . import reference
    in_native = choose(model, coder, conds is not None).native
    return reference.encode_planes(model, planes, tile, progress, max_pixels, CODER_SYMBOLS, conds, coder, in_native)


def _encode_native(model, planes: list[np.ndarray], jobs: list, progress, threads: int):
    """Format v3 with the native encoder: one call per tile (`jobs`: (plane, tile number, (y, x, h, w))),
    in `threads` threads (the call releases the GIL); the bytes of reference.code_lanes
    (tests/test_native.py)."""
    def one(job):
        k, _, (y, x, h, w) = job
        states, words, total, width = native.encode_tile(model, planes[k][y:y + h, x:x + w],
                                                         lanes_per_tile(h, w, model.slope))
        bits = np.log2(total.astype(np.float64)) - np.log2(width.astype(np.float64))   # reporting only
        return np.concatenate([pack_states(states), words]), float(np.sum(bits))

    streams, bits = [[] for _ in planes], [0.0] * len(planes)
    with ThreadPoolExecutor(max(1, threads)) as threads_pool:
        for (k, _, (_, _, h, w)), (stream, tile_bits) in zip(jobs, threads_pool.map(one, jobs)):
            streams[k].append(stream)
            bits[k] += tile_bits
            if progress:
                progress(h * w)
    return list(zip(streams, bits))


def _encode_on_device(model, planes, tile, progress, max_pixels, workers, coder):
    """The network on the device in this process. The rANS lanes run there too
    (`gpu.encode_lanes_here`) unless PIXZIP_DEVICE_LANES=0; otherwise the coder runs on the CPU, fanned
    out to `workers` processes: tile by tile for the range coder, in groups of tiles for the rANS
    lanes. Every tile is its own stream, so the same bytes."""
    from . import pool, reference
    from .gpu import encode_lanes_here
    channels = model.cfg.channels
    if choose(model, coder).lanes_here:
        coded = (c for items in reference.batch_symbols(model, planes, tile, max_pixels)
                 for c in reference.code_lanes(model, items, CODER_SYMBOLS_HERE, encode_lanes_here))
        return reference.collect(len(planes), coded, progress, channels)
    if workers <= 1:
        return _encode_planes(model, planes, tile, progress, max_pixels, coder=coder)
    coders = pool.coder_pool(workers, model.host)
    try:
        if coder == "range":
            pending = [(key, len(symbols), coders.apply_async(pool.code_tile_job, (symbols, params)))
                       for key, symbols, params in reference.tile_symbols(model, planes, tile, max_pixels)]
            coded = ((key, n, job.get()) for key, n, job in pending)
        else:
            jobs = []
            for items in reference.batch_symbols(model, planes, tile, max_pixels):
                items = [t._replace(params=t.params.cpu()) for t in items]
                for g in np.array_split(np.arange(len(items)), min(workers, len(items))):
                    jobs.append(coders.apply_async(pool.code_lanes_job, ([items[i] for i in g], CODER_SYMBOLS)))
            coded = (c for job in jobs for c in job.get())
        return reference.collect(len(planes), coded, progress, channels)
    finally:
        coders.terminate()


def encode_plane(model, plane: np.ndarray, tile: int, progress: Callable[[int], None] | None = None,
                 max_pixels: int = MAX_BATCH_PIXELS) -> tuple[list[np.ndarray], float]:
    """encode_planes for one plane."""
    return encode_planes(model, [plane], tile, progress, max_pixels)[0]


# -- decoding ------------------------------------------------------------------------------------------
def wavefront_decode(model, height: int, width: int, tile: int, choose_symbols, progress=None,
                     max_pixels: int = MAX_BATCH_PIXELS, dtype=None) -> np.ndarray:
    """Decode one plane wavefront by wavefront (`wavefront.decode_tiles`) with the symbols decided by
    choose_symbols(tile number, freq, (i, j, c)) (a multi-scale model: the small image's stage first,
    its tiles numbered from -1 down). `dtype`: the tables' torch dtype (None: int32)."""
    model = network(model)
    from . import wavefront
    dtype = _torch("decoding").int32 if dtype is None else dtype
    conds = None
    if _is_multiscale(model):
        check_tile(model, tile)
        small = wavefront_decode(model.small, *model.small_shape(height, width), tile,
                                 lambda n, f, w: choose_symbols(-1 - n, f, w), None, max_pixels, dtype)
        model, conds = model.big, {}
    grid = tile_grid(height, width, tile)
    if conds is not None:
        conds = {n: small_part(small, y, x, h, w, model.cfg.scale) for n, (y, x, h, w) in enumerate(grid)}
    parts = wavefront.decode_tiles(model, [(n, h, w) for n, (_, _, h, w) in enumerate(grid)], choose_symbols,
                                   progress, max_pixels, dtype, conds, graphs=choose(model).graphs)
    return assemble(height, width, model.cfg.channels, grid, parts, key=lambda n: n)


def decode_plane(model, height: int, width: int, tile: int, streams: list[np.ndarray],
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
    if coder == "rans" and _on_cpu(model) and not _is_multiscale(model) and choose(model, coder).native:
        grids = [tile_grid(h, w, tile) for h, w in shapes]      # the native decoder: no torch on this path
        jobs = [((k, n), h, w) for k, g in enumerate(grids) for n, (_, _, h, w) in enumerate(g)]
        parts = _decode_native(model, jobs, [streams[k][n] for (k, n), _, _ in jobs], progress,
                               min(workers, len(jobs)))      # threads: no process start-up
        return [assemble(h, w, model.cfg.channels, g, parts, key=lambda n, k=k: (k, n))
                for k, ((h, w), g) in enumerate(zip(shapes, grids))]
    model = network(model)
    from . import pool
    smalls = None
    if _is_multiscale(model):
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
    conds = None if smalls is None else {(k, n): small_part(smalls[k], y, x, h, w, model.cfg.scale)
                                          for k, g in enumerate(grids) for n, (y, x, h, w) in enumerate(g)}
    workers = min(workers, len(jobs)) if model.device.type == "cpu" else 1   # a GPU: its one process
    if workers <= 1 or sum(h * w for h, w in shapes) < PARALLEL_MIN_PIXELS:
        parts = _decode_streams(model, jobs, [tile_streams[key] for key, _, _ in jobs], max_pixels, progress, conds,
                                coder)
    else:
        parts = {}
        for g, result in pool.in_workers(workers, jobs, lambda g: (_decode_streams, (
                model, g, [tile_streams[key] for key, _, _ in g], max_pixels, None,
                None if conds is None else {key: conds[key] for key, _, _ in g}, coder))):
            parts.update(result)
            if progress:
                progress(sum(h * w for _, h, w in g))
    C = model.cfg.channels
    return [assemble(h, w, C, g, parts, key=lambda n, k=k: (k, n)) for k, ((h, w), g) in enumerate(zip(shapes, grids))]


def _decode_streams(model, jobs, streams, max_pixels, progress=None, conds=None, coder="rans") -> dict:
    """Entropy-decode the tiles `jobs` (key, h, w) from their streams (same order), on the backend
    `choose` names (also a worker process's share)."""
    from . import reference, wavefront
    from .gpu import _DeviceLanes
    where = choose(model, coder, conds is not None)
    by_key = {key: s for (key, _, _), s in zip(jobs, streams)}
    if coder == "rans":
        if where.native:
            return _decode_native(model, jobs, streams, progress)    # (one worker's share)
        lanes = _DeviceLanes if where.lanes_here else reference.LaneDecoder
        return wavefront.decode_tiles(model, jobs, lanes(model, by_key), progress, max_pixels, conds=conds,
                                      graphs=where.graphs)
    from ..entropy import range_coder
    return wavefront.decode_tiles(model, jobs, range_coder.tile_decoders(by_key), progress, max_pixels,
                                  dtype=_torch("format v1-v2 files").float64, conds=conds, graphs=where.graphs)


def _decode_native(model, jobs, streams, progress=None, workers: int = 1) -> dict:
    """Format v3 tiles decoded by the native decoder, one call per tile, in `workers` threads (the call
    releases the GIL): the same pixels as decode_tiles with a LaneDecoder (backends/native.py).
    Raises ValueError for a corrupt stream."""
    def one(job, stream):
        (_, h, w), stream = job, np.asarray(stream)
        states, used = unpack_states(stream, lanes_per_tile(h, w, model.slope))
        return native.decode_tile(model, states, stream[used:], h, w)

    out = {}
    with ThreadPoolExecutor(max(1, workers)) as threads:
        for (key, h, w), pixels in zip(jobs, threads.map(one, jobs, streams)):
            out[key] = pixels
            if progress:
                progress(h * w)
    return out


# -- format v4: stored planes (entropy stage 2); the adaptive stage (stage 1) is adaptive_planes.py ---------

def stored_plane_stream(plane: np.ndarray, bits: int) -> np.ndarray:
    """Entropy stage 2: a whole plane's samples bit-packed (raster order, channel-last), framed."""
    return frame(pack_bits(plane, bits))


def lz_plane_stream(plane: np.ndarray, budget: int, hard: bool = True, probe: bool = True,
                    workers: int = 0) -> tuple[int, np.ndarray] | None:
    """Entropy stage 3: (mode, framed stream) of the plane LZMA2-coded (entropy/lz.py; `hard`: its
    strongest setting; `probe`: ruled out first by its fast probe; `workers`: threads, 0 for coding_threads())
    where its stream is strictly smaller than `budget` bytes, else None."""
    # (the frame's head and padding: at most 4 bytes)
    coded = lz.encode(plane, budget - 4, hard, probe, workers or coding_threads())
    if coded is None:
        return None
    words = frame(coded[1])
    return (coded[0], words) if 4 * words.size < budget else None


def lz_plane(words: np.ndarray, shape: tuple[int, int, int], mode: int) -> np.ndarray:
    """Inverse of lz_plane_stream; ValueError if the stream is not exactly that plane."""
    payload, stored = unframe(words)
    if stored:
        raise ValueError("an LZ plane's stream has the stored-tile flag")
    return lz.decode(payload, shape, mode)


def stored_plane(words: np.ndarray, shape: tuple[int, int, int], bits: int) -> np.ndarray:
    """Inverse of stored_plane_stream; ValueError if the stream is not exactly that plane."""
    payload, stored = unframe(words)
    if stored:
        raise ValueError("a stored plane's stream has the stored-tile flag")
    try:
        return unpack_bits(payload, shape, bits)
    except PixzipError as e:
        raise ValueError(str(e)) from None
