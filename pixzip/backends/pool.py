"""Worker processes for coding many tiles on several cores: a fork server, signals, and the workers'
shares. Tiles are independent streams, so no grouping ever changes a byte."""

from __future__ import annotations

import multiprocessing
import signal

import numpy as np
import torch

from ..entropy import range_coder
from .reference import TileSymbols, code_lanes, encode_planes, one_thread


def in_workers(workers: int, jobs: list, task):
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


_worker_model = None      # a coder process's model, set once when the process starts


def coder_pool(workers: int, model):
    """Processes that code tiles with `model` (on the CPU) from head outputs made elsewhere."""
    return _pool(workers, _coder_worker, (model,))


def _coder_worker(model):
    global _worker_model
    _ignore_sigint()
    _worker_model = model
    torch.set_num_threads(1)


def code_lanes_job(items: list[TileSymbols], limit: int) -> list:
    """A coder process's share of a batch: its tiles' streams (the lanes of a tile never depend on
    another tile's)."""
    return list(code_lanes(_worker_model, items, limit))


def code_tile_job(symbols: np.ndarray, params: torch.Tensor) -> tuple[np.ndarray, float]:
    """A coder process's range-coded tile."""
    return range_coder.encode_tile(_worker_model, symbols, params)


def encode_tiles_job(model, tiles: list[np.ndarray], max_pixels: int, coder: str, limit: int, in_native: bool):
    """A worker's share: each tile coded as a plane of its own (one stream: the tile's bytes)."""
    with one_thread():
        return encode_planes(model, tiles, 0, None, max_pixels, limit, coder=coder, in_native=in_native)


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent handles Ctrl-C and stops the workers
    # ...with SIGTERM, which must end a worker silently (the fork server may have imported the CLI,
    # whose start-up handler reports an interruption)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool(workers: int, initializer=_ignore_sigint, initargs=()):
    """Worker processes from a fork server (torch's OpenMP state is not fork-safe; spawn would re-import
    torch in every worker). The server preloads this module once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pixzip.backends.codec"])
    return ctx.Pool(workers, initializer=initializer, initargs=initargs)
