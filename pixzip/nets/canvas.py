"""Where the integer networks evaluate: a *canvas* is a batch of equally sized, zero-padded tiles. Each
layer writes its int8 output into a padded buffer; a convolution gathers its taps from the buffer below
at a set of positions. The decoder evaluates at scattered positions (`Scattered`: a wavefront), the
encoder at runs of consecutive positions (`Dense`); both compute the same integers at real pixels."""

from __future__ import annotations

import numpy as np
import torch

from .qconv import taps_of


class Canvas:
    """Padded int8 buffers for a batch of tiles, each at most (H, W), plus the schedule helpers."""

    def __init__(self, sizes: list[tuple[int, int]], pad: int, channels: dict[str, int | tuple],
                 device: torch.device = torch.device("cpu")):
        """`channels`: buffer name -> width (int8), or (width, dtype)."""
        self.sizes = sizes
        self.device = device
        self.H = max(h for h, _ in sizes)
        self.W = max(w for _, w in sizes)
        self.pad = pad
        self.Hp, self.Wp = self.H + pad, self.W + 2 * pad
        n = len(sizes) * self.Hp * self.Wp
        self.buf = {}
        for name, spec in channels.items():
            c, dtype = spec if isinstance(spec, tuple) else (spec, torch.int8)
            self.buf[name] = torch.zeros(n, c, dtype=dtype, device=device)

    def flat(self, tile: np.ndarray, i: np.ndarray, j: np.ndarray) -> torch.Tensor:
        f = tile * (self.Hp * self.Wp) + (i + self.pad) * self.Wp + (j + self.pad)
        return torch.from_numpy(np.ascontiguousarray(f, dtype=np.int64)).to(self.device)

    def offsets(self, taps: list[tuple[int, int]]) -> torch.Tensor:
        return torch.tensor([dy * self.Wp + dx for dy, dx in taps], dtype=torch.int64, device=self.device)

    def locate(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat positions -> (tile, i, j)."""
        tile, rest = pos // (self.Hp * self.Wp), pos % (self.Hp * self.Wp)
        return tile, rest // self.Wp - self.pad, rest % self.Wp - self.pad

    def pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tile, i, j) of every real pixel, tile by tile in raster order."""
        t, ii, jj = [], [], []
        for n, (h, w) in enumerate(self.sizes):
            i, j = np.divmod(np.arange(h * w), w)
            t.append(np.full(h * w, n)), ii.append(i), jj.append(j)
        return np.concatenate(t), np.concatenate(ii), np.concatenate(jj)


def rows(buf: torch.Tensor) -> torch.Tensor:
    """`buf` with each row as few wide elements as its size allows (int64 for a 48-byte row): gathering
    rows by index costs per element, so this is 3x faster for the hidden buffers. The same bytes."""
    width = buf.shape[1] * buf.element_size()
    if buf.is_contiguous() and width % 8 == 0:
        return buf.view(torch.int64)
    return buf


def _words(buf: torch.Tensor, cols: slice) -> tuple[int, int, int] | None:
    """(words per row, first word, end word) if the columns `cols` of a contiguous int8 buffer are
    whole 64-bit words, else None."""
    n = buf.shape[1]
    start, stop = cols.start or 0, n if cols.stop is None else cols.stop
    if buf.dtype != torch.int8 or not buf.is_contiguous() or n % 8 or start % 8 or stop % 8:
        return None
    return n // 8, start // 8, stop // 8


class Scattered:
    """Positions anywhere on a canvas (a decoder's wavefront): taps are gathered by index."""

    def __init__(self, model: "IntModel", canvas: Canvas, pos: torch.Tensor):
        self.model, self.canvas, self.pos = model, canvas, pos
        self._index: dict = {}
        self._centre: dict = {}
        self._kept: dict = {}

    def index(self, key) -> torch.Tensor:
        """(n, taps) buffer rows that a convolution with gather pattern `key` reads."""
        if key not in self._index:
            self._index[key] = self.pos[:, None] + self.model._offs(self.canvas, key)[None, :]
        return self._index[key]

    def taps(self, buf: torch.Tensor, key, name: str = "", group: int | None = None) -> torch.Tensor:
        """The inputs (n, taps * channels) of a convolution at every position.

        With a buffer `name` and a channel `group`, the gather happens once per wavefront: every tap
        but the centre reads an earlier wavefront, which later groups' steps cannot change, so for
        group > 0 only the centre tap's channels are read again."""
        if not name or group is None:
            return self._gather(buf, key)
        kept = self._kept.get((name, key))
        if kept is None or group == 0:
            kept = self._kept[(name, key)] = self._gather(buf, key)
        elif tuple(taps_of(key)[-1]) == (0, 0):
            kept[:, -buf.shape[1]:] = rows(buf).index_select(0, self.pos).view(buf.dtype)
        return kept

    def _gather(self, buf: torch.Tensor, key) -> torch.Tensor:
        return rows(buf).index_select(0, self.index(key).view(-1)).view(buf.dtype).view(len(self.pos), -1)

    def write(self, buf: torch.Tensor, cols: slice, y: torch.Tensor):
        words = _words(buf, cols)
        if words is None:
            buf[:, cols].index_copy_(0, self.pos, y)
            return
        # a row's columns `cols` as whole 64-bit words: one flat copy (5x faster than a strided one)
        per_row, a, b = words
        where = self._index.get(("write", per_row, a, b))
        if where is None:
            word = torch.arange(a, b, device=buf.device)
            where = self._index[("write", per_row, a, b)] = (self.pos[:, None] * per_row + word).view(-1)
        buf.view(torch.int64).view(-1).index_copy_(0, where, y.contiguous().view(torch.int64).view(-1))

    def centre(self, name: str, group: int | None, y: torch.Tensor) -> torch.Tensor:
        """A layer's output y here for `group`, joined to the earlier groups' outputs at the same
        positions (kept from the earlier R/G/B steps of this wavefront): what a 1x1 mask-B layer reads,
        without a buffer write and gather."""
        if group is None:
            return y
        kept = self._centre.setdefault(name, [])
        if len(kept) != group:
            raise ValueError("channel groups must be evaluated in order, once per wavefront")
        kept.append(y)
        return y if group == 0 else torch.cat(kept, dim=1)


class Dense:
    """A run of consecutive canvas positions [lo, hi) (the encoder's pass): a tap is a shifted slice of
    a buffer, so nothing is gathered by index. Padding positions are computed too and written as
    zeros, which is what the next layer must read there. The same integers as `Scattered` at the real
    positions (each output depends only on its own taps).

    Every tap lies at or before its output position (rows above, left, centre), so a canvas can be
    evaluated run by run in ascending order, all layers on one run before the next: the runs stay
    small enough for the cache (`dense_runs`)."""

    def __init__(self, model: "IntModel", canvas: Canvas, lo: int, hi: int, valid: torch.Tensor):
        self.model, self.canvas, self.lo, self.hi = model, canvas, lo, hi
        self.valid = valid                             # int8 (hi - lo, 1): 1 at real pixels

    def taps(self, buf: torch.Tensor, key, name: str = "", group: int | None = None) -> torch.Tensor:
        offs = self.model._offs(self.canvas, key).tolist()
        parts = [buf[self.lo + o:self.hi + o] for o in offs]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def write(self, buf: torch.Tensor, cols: slice, y: torch.Tensor):
        buf[self.lo:self.hi, cols] = y * self.valid.to(y.dtype)

    def centre(self, name: str, group: int | None, y: torch.Tensor) -> torch.Tensor:
        if group is not None:
            raise ValueError("the dense pass evaluates all channel groups at once")
        return y


DENSE_RUN = 8192     # positions per run of the encoder's dense pass (its temporaries fit a cache)
DENSE_RUN_CUDA = 1 << 22    # on a GPU: as many as there are (one launch per layer and run)


def dense_runs(model: "IntModel", canvas: Canvas, pos: torch.Tensor):
    """The encoder's pass over every real pixel of a canvas (`pos`, ascending, as canvas.pixels()
    gives them) as runs of DENSE_RUN consecutive positions, to evaluate in order."""
    real = canvas.flat(*canvas.pixels())
    if not torch.equal(pos, real):
        raise ValueError("the dense pass takes every real pixel of the canvas, in order")
    lo, hi = int(real[0]), int(real[-1]) + 1
    valid = torch.zeros(hi - lo, 1, dtype=torch.int8, device=pos.device)
    valid[real - lo] = 1
    run = DENSE_RUN_CUDA if pos.is_cuda else DENSE_RUN
    for a in range(lo, hi, run):
        b = min(a + run, hi)
        yield Dense(model, canvas, a, b, valid[a - lo:b - lo])
