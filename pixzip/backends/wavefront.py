"""The decoder's walk: tiles decoded wavefront by wavefront, batched on shared canvases, each
wavefront's network step (eager, or replayed as CUDA graphs) followed by the symbols' choice."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..nets.base import IntModel
from .gpu import GraphSteps, _DeviceLanes
from .reference import PerTile, batches, load_batch, one_thread


@torch.inference_mode()     # see reference.encode_planes
def decode_tiles(model: IntModel, jobs: list[tuple], choose, progress: Callable[[int], None] | None,
                 max_pixels: int, dtype: torch.dtype = torch.int32,
                 conds: dict | None = None, graphs: bool = False) -> dict:
    """Decode tiles wavefront by wavefront, batched on shared canvases; `jobs` are (key, h, w) with any
    hashable key (the tiles may come from several planes or images). `choose` decides the symbols:
    either a per-tile function choose(key, freq, (i, j, c)) returning the symbols of one tile's
    sub-pixels at the current step (tile rows i, columns j, channel c) given their integer frequency
    tables (constriction's decoder, a sampler, or in tests a recorder; `dtype` is the tables'), or a
    decoder for all tiles at once (`LaneDecoder`). A conditional model takes each tile's part of the
    subsampled plane, `conds` {key: uint8 array}. `graphs`: replay the steps as CUDA graphs (the
    caller's choice, `codec.choose`). Returns {key: uint8 (h, w, C)}."""
    if not hasattr(choose, "begin"):
        choose = PerTile(model, choose, dtype)
    out = {}
    with one_thread():
        for batch in batches([(key, 0, 0, h, w) for key, h, w in jobs], max_pixels, first=1):
            out.update(_decode_batch(model, batch, choose, progress, conds, graphs))
    return out


def _decode_batch(model: IntModel, batch, decide, progress, conds=None, graphs: bool = False) -> dict:
    """Decode one canvas of tiles (key, 0, 0, h, w)."""
    C = model.cfg.channels
    on_device = isinstance(decide, _DeviceLanes)
    # CUDA graphs need fixed shapes: every wavefront is padded to the widest with a sink pixel, in a
    # tile of its own that no real pixel reads
    padded = graphs or on_device
    canvas, _ = load_batch(model, batch + [(None, 0, 0, 1, 1)] if padded else batch, None, conds)
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
        steps = GraphSteps(model, canvas, flat, bounds, len(batch), capture=graphs and device.type == "cuda",
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
