"""The GPU path: the decoder's steps replayed as CUDA graphs, and format v3's rANS lanes run on the
device (encoder lockstep and decoder passes) so that nothing waits for the host between sub-steps.
The same integers as the host's reference (tests/test_rans.py and tests/test_gpu.py run these on the
CPU, eagerly, against it)."""

from __future__ import annotations

import numpy as np
import torch

from ..entropy import rans
from ..nets.base import IntModel
from .reference import LaneDecoder


LOCKSTEP_GRAPH_STEPS = 64     # lockstep steps per CUDA graph replay


def encode_lanes_here(lo: torch.Tensor, freq: torch.Tensor, lane: torch.Tensor, n_lanes: int):
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

    def step():
        _lockstep_step(x, m, counts, last, lo, freq, written, word, n)

    total_steps = int(counts.max()) if n else 0
    graph = None
    if device.type == "cuda" and total_steps > LOCKSTEP_GRAPH_STEPS:
        step()     # a first step before capture warms up (caches, allocator); undone below
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



GRAPH_STATS = {"captured": 0, "failed": 0, "error": ""}    # for benchmarks: did CUDA graphs run?


def _record_failure(stats: dict, e: Exception):
    """Count a fallback (no CUDA graph) in `stats`, with the first line of why."""
    stats["failed"] += 1
    stats["error"] = str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__


class GraphSteps:
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


class _DeviceLanes(LaneDecoder):
    """LaneDecoder with the lanes on the network's device (int64 tensors): the same passes and the
    same integers, but nothing returns to the host between sub-steps, so that a whole sub-step (the
    network, the lanes, the write of the decoded values) replays as one CUDA graph (`GraphSteps`).

    Shapes are fixed for the graphs: every wavefront is laid out padded to one width, its pixels in
    pass order, and each pass runs over the whole width with the other passes' pixels (and the
    padding) masked: they decode on a spare lane (index `lanes`) of a spare tile (index `tiles`), which
    nothing reads. Runs on the CPU too (the tests compare it with LaneDecoder there)."""

    def begin(self, batch, tiles: np.ndarray, ii: np.ndarray, t: np.ndarray):
        super().begin(batch, tiles, ii, t)
        device = self.model.device
        self.n_lanes, self.n_tiles = len(self.state), len(self.ptr)
        self.x = torch.from_numpy(np.r_[self.state, rans.LOW]).to(device)
        self.at = torch.from_numpy(np.r_[self.ptr, 0]).to(device)
        self.words_here = torch.from_numpy(self.words).to(device)
        self.n_passes = int(self.pass_id.max()) + 1 if len(self.pass_id) else 0

    def layout(self, bounds: np.ndarray, width: int):
        """Every wavefront's pixels as five rows of `width` (padding after the pixels): position in
        the wavefront (in pass order), lane, tile, the position where its tile's part of its pass
        starts, pass. The layout of the wavefront to decode is copied into `self.current`."""
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

    def wavefront(self, k: int):
        self.current.copy_(self.layouts[k])

    def decode_into(self, params: torch.Tensor, img_flat: torch.Tensor, pos: torch.Tensor, values: torch.Tensor,
                    c: int):
        """Decode the current wavefront's channel c from the head outputs there (padded, wavefront
        order) and write the values into the image buffer at the positions `pos`."""
        img_flat.index_copy_(0, pos * self.model.cfg.channels + c, values[self.decode(params)])

    def decode(self, params: torch.Tensor) -> torch.Tensor:
        """The symbols of the current wavefront (padded, in wavefront order) from the head outputs
        there; the states and read positions advance in place."""
        order = self.current[0]
        tables = self.model.cdf_tables_here(params.index_select(0, order))
        # (torch.compile was tried on these passes: 5x slower on an H100, 0.28 against 1.40 MP/s; it
        # was removed with PIXZIP_COMPILE, see docs/ARCHITECTURE.md)
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
