"""Integer-exact inference engine: the single probability path of encoder and decoder.

Everything that decides a probability here is integer arithmetic: int8 activations and weights, int32
accumulation with `torch._int_mm`, requantisation by an integer multiply and an arithmetic shift, and
lookup tables (stored in the model file) for exp() and the Laplace slopes. Integer addition is
associative, so any device, thread count, kernel or batch composition gives the same integers.

The network is evaluated on a *canvas*: a batch of equally sized, zero-padded tiles. Each layer writes
its int8 output into a padded buffer; a convolution gathers its taps from the buffer below at a set of
positions. The encoder calls `IntPixelCNN.forward` once with every position and every channel group;
the decoder calls it wavefront by wavefront and group by group. Both run the same code, so they compute
the same integers (tests/test_engine.py proves it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch

from .model import LS_FRAC, LS_MIN, ModelConfig

INVB_SHIFT = 14         # Laplace slope table is 2^14 / scale
ROW = 511               # Laplace rows: x - floor(mu) in -255..255
PROB_BITS = 16          # exp table: 2^16 * exp(-k / 16), floor 1


class GroupParams(NamedTuple):
    """One channel group's slice of a QConv, with the bias folded into the rounding offset."""
    weight: torch.Tensor           # int8 (taps * cin, cout_group); on CUDA the same values as float32
    bias: torch.Tensor             # int32
    mult: torch.Tensor             # int64
    offset: torch.Tensor           # int64: bias * mult + 2^(shift - 1)
    shift: torch.Tensor            # int64
    weight_low: torch.Tensor | None
    scale: torch.Tensor | None     # float64 mult * 2^-shift, where `float_requant_exact` holds (CPU only)


def conv_taps(k: int) -> list[tuple[int, int]]:
    """(dy, dx) offsets a causal kxk convolution reads: rows above, left in the row, the centre."""
    p = k // 2
    return [(dy, dx) for dy in range(-p, 1) for dx in range(-p, p + 1) if dy < 0 or dx <= 0]


def int_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """int8 (m, k) @ int8 (k, n) -> int32 (m, n), exact: int32 accumulation on the CPU; on a GPU
    float32 products (cuBLAS's int8 path refuses many shapes: CUBLAS_STATUS_NOT_SUPPORTED on an H100)."""
    return float_int_mm(x, w) if x.is_cuda else torch._int_mm(x, w)


FLOAT_EXACT_K = 1024    # k * 128 * 128 <= 2^24: the largest sum of int8 products float32 holds exactly


def float_int_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The int8 product computed in float32, exact in any summation order: every product and every
    partial sum of at most FLOAT_EXACT_K of them is an integer of magnitude <= 2^24, which float32 (and
    TF32's inputs, int8 values having 8 significant bits) represents exactly. Longer sums go by
    chunks, added in int32."""
    acc = None
    for a in range(0, x.shape[1], FLOAT_EXACT_K):
        part = torch.mm(x[:, a:a + FLOAT_EXACT_K].float(), w[a:a + FLOAT_EXACT_K].float()).to(torch.int32)
        acc = part if acc is None else acc.add_(part)
    return acc


def taps_of(key) -> list[tuple[int, int]]:
    """The taps of a gather key: a kernel size (the square causal pattern) or the taps themselves."""
    return conv_taps(key) if isinstance(key, int) else list(key)


@dataclass
class QConv:
    """A masked convolution in integers: out = requant(sum_taps x * w + bias)."""
    k: int
    weight: torch.Tensor          # int8 (taps * cin, cout), tap-major
    bias: torch.Tensor            # int32 (cout,)
    mult: torch.Tensor            # int64 (cout,)  requant multiplier
    shift: torch.Tensor           # int64 (cout,)
    relu_in: bool = False         # clamp the gathered input at 0 (a ReLU before the conv)
    lo: int = -128                # clamp of the requantised output (0 for a ReLU after the conv)
    hi: int = 127
    groups: int = 1
    weight_low: torch.Tensor | None = None   # wide weights: w = 256 * weight + weight_low (both int8)
    taps: tuple | None = None     # (dy, dx) offsets read, in weight order; None: conv_taps(k)
    _split: dict = field(default_factory=dict, repr=False)

    @property
    def cout(self) -> int:
        return self.weight.shape[1]

    @property
    def key(self):
        """The key of this convolution's gather pattern in a gather index."""
        return self.k if self.taps is None else tuple(self.taps)

    def cols(self, group: int | None) -> slice:
        """Output channels of one group (R, G or B), or all of them."""
        if group is None:
            return slice(0, self.cout)
        n = self.cout // self.groups
        return slice(group * n, (group + 1) * n)

    def _params(self, group: int | None) -> GroupParams:
        """Per-group weight slice and requantisation constants, built once.

        The bias is folded into the rounding offset: (acc + b) * m + 2^(sh-1) = acc * m + (b * m + 2^(sh-1)),
        the same integers (|acc + b| < 2^31 and m < 2^31, so nothing overflows int64)."""
        if group not in self._split:
            c = self.cols(group)
            bias, mult, shift = self.bias[c].to(torch.int64), self.mult[c], self.shift[c]
            offset = bias * mult + (1 << (shift - 1))
            weight = self.weight[:, c].contiguous()
            low = None if self.weight_low is None else self.weight_low[:, c].contiguous()
            scale = None
            if weight.is_cuda:      # float_int_mm's operand, converted once (the same integer values)
                weight, low = weight.float(), None if low is None else low.float()
            elif float_requant_exact(shift, self.lo, self.hi):
                scale = mult.to(torch.float64) * torch.pow(2.0, -shift.to(torch.float64))
            self._split[group] = GroupParams(weight, bias.to(torch.int32), mult, offset, shift, low, scale)
        return self._split[group]

    def accumulate(self, buf: torch.Tensor, index: torch.Tensor, group: int | None) -> torch.Tensor:
        """int32 (n, cout_group) accumulators without bias; `index` (n, taps) holds the buffer rows."""
        return self.matmul(buf.index_select(0, index.view(-1)).view(len(index), -1), group)

    def matmul(self, x: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """int32 (n, cout_group) accumulators of gathered int8 inputs x (n, taps * cin).

        A 1x1 convolution may be given only its first input channels (the channel groups up to
        `group`, as the decoder keeps them): the weights of the others are masked to zero for this
        group, so leaving them out gives the same integers."""
        if self.relu_in:
            x = x.clamp(min=0)            # not in place: x may be a view of a canvas buffer
        p = self._params(group)
        weight, low = p.weight, p.weight_low
        if x.shape[1] != weight.shape[0]:
            if len(taps_of(self.key)) != 1 or x.shape[1] > weight.shape[0]:
                raise ValueError("only a 1x1 convolution takes a prefix of its input channels")
            weight = weight[:x.shape[1]]
            low = None if low is None else low[:x.shape[1]]
        acc = int_mm(x, weight)
        if low is not None:   # wide weights: |x| <= 128, |w| <= 127 * 256, <= 2^10 taps: no overflow
            acc = acc.mul_(256).add_(int_mm(x, low))
        return acc

    def to(self, device: torch.device) -> "QConv":
        """A copy with its tensors on `device`."""
        return replace(self, weight=self.weight.to(device), bias=self.bias.to(device), mult=self.mult.to(device),
                       shift=self.shift.to(device),
                       weight_low=None if self.weight_low is None else self.weight_low.to(device), _split={})

    def biased(self, acc: torch.Tensor, group: int | None) -> torch.Tensor:
        """Accumulators plus bias (for the output layer, which is not requantised here)."""
        return acc.add_(self._params(group).bias)

    def requant(self, acc: torch.Tensor, group: int | None, cond: tuple | None = None) -> torch.Tensor:
        """round((acc + bias) * mult / 2^shift), clamped to [lo, hi], as int8 (int32 if wider).

        `cond` = (accumulators, QConv) of a conditional bias, whose `mult` is at this layer's shift:
        both terms are summed before the one rounding, as in the float model."""
        p = self._params(group)
        if p.scale is not None and cond is None:
            # the same integers in float64, twice as fast on a CPU (see float_requant_exact)
            return torch.addcmul(HALF, acc + p.bias, p.scale).floor_().clamp_(self.lo, self.hi).to(self.out_dtype)
        y = mul_add_int64(acc, p.mult, p.offset)
        if cond is not None:
            c_acc, c_conv = cond
            y.add_(c_acc.to(torch.int64).mul_(c_conv.mult[self.cols(group)]))
        y.bitwise_right_shift_(p.shift)
        return y.clamp_(self.lo, self.hi).to(self.out_dtype)

    @property
    def out_dtype(self) -> torch.dtype:
        """The narrowest of int8 / int16 / int32 that holds [lo, hi]."""
        for dtype in (torch.int8, torch.int16):
            info = torch.iinfo(dtype)
            if info.min <= self.lo and self.hi <= info.max:
                return dtype
        return torch.int32


HALF = torch.tensor([0.5], dtype=torch.float64)


def float_requant_exact(shift: torch.Tensor, lo: int, hi: int) -> bool:
    """Whether clamp(floor((z * m + 2^(sh-1)) / 2^sh), lo, hi) (z = acc + bias, an int32) equals
    clamp(floor(fl(fl(z * f) + 0.5)), lo, hi) in float64, f = m * 2^-sh (exact: m < 2^31), for every z.

    With M = max(|lo|, hi + 1) and M * 2^(sh+1) <= 2^53 it does, fused multiply-add or not:
    - where the true u = z * f + 1/2 lies in [lo, hi + 1), |z * m| < M * 2^(sh+1) <= 2^53, so z * m and
      z * m + 2^(sh-1) are integers float64 holds exactly: both roundings are exact, and so the floor;
    - elsewhere rounding is monotonic and lo - 1/2, hi + 1/2, hi + 1 are exact: u >= hi + 1 gives a
      float >= hi + 1 and u < lo a float <= lo, which the clamp maps to hi and lo as it maps u.
    (The shipped models need sh <= 45 for int8 outputs, sh <= 37 for the 16-bit stream; they have at
    most 44 and 34.) tests/test_engine.py checks both paths on extreme and random accumulators."""
    m = max(abs(lo), hi + 1)
    return (m << (int(shift.max()) + 1)) <= 1 << 53


def residual_add(base: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Stream + update on the shared residual-stream scale, saturated to the stream's type (int8 or
    int16)."""
    info = torch.iinfo(base.dtype)
    return base.to(torch.int32).add_(y).clamp_(info.min, info.max).to(base.dtype)


def requantize(acc: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """round(acc * mult / 2^shift), clamped; exact integer arithmetic (int64, arithmetic shift)."""
    # int64 in one pass: 1-d constants take part in type promotion (0-d ones would not, leaving an
    # int16 input in int16)
    mult, shift = torch.atleast_1d(mult), torch.atleast_1d(shift)
    return mul_add_int64(acc, mult, 1 << (shift - 1)).bitwise_right_shift_(shift).clamp_(lo, hi)


def mul_add_int64(acc: torch.Tensor, mult: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """acc * mult + offset in int64 (mult, offset int64): one addcmul pass on the CPU; on CUDA, whose
    addcmul is not promised for integer types, a multiply and an add (the same integers)."""
    if acc.is_cuda:
        return acc.to(torch.int64).mul_(mult).add_(offset)
    return torch.addcmul(offset, acc, mult)


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


class IntModel:
    """What every integer architecture shares: the head (masked 1x1 layers, optional linear skip
    predictor), the requantisation of its outputs and the frequency tables. Subclasses define the
    trunk, the canvas buffers, the decode schedule (`slope`) and `encode_params` / `step_params`.

    The codec uses: `cfg`, `slope`, `new_canvas`, `encode_params` (the encoder's pass over all
    pixels of a canvas), `gather_index` + `step_params` (the decoder's step: one wavefront, one
    channel), `frequencies` (format v2's tables), `cdf_tables` (v3's; `cdf_tables_here` on a GPU),
    `symbol_values`."""

    def __init__(self, cfg: ModelConfig, layers: dict, head: dict, tables: dict):
        self.cfg = cfg
        self.first: QConv = layers["first"]
        self.head1: QConv = layers["head1"]
        self.out: QConv = layers["out"]
        self.skip: QConv | None = layers.get("skip")      # image -> mu linear predictor, or None
        self.head = head            # mult/shift per output channel for mu, log-scale or logits
        # conditional models (cfg.cond): the deconvolution of the small image and per-layer 1x1 biases
        self.upsample: QConv | None = layers.get("upsample")
        self.cond: dict[str, QConv] = layers.get("cond", {})
        self.tables = tables
        self.exp_table = tables["exp"].to(torch.int32)
        self._exp_f64 = self.exp_table.to(torch.float64)
        self.invb_table = tables["invb"].to(torch.int32)
        self._cache: dict = {}     # derived once from the model: gather offsets per canvas width, tables
        self.device = torch.device("cpu")
        self.host = self           # the model on the CPU (where the coder's tables are made)
        self._on: dict = {}        # device -> this model's copy there
        # symbol -> pixel value (bilevel models code 0 and 255 as 0 and 1)
        self.symbol_values = np.arange(256) if cfg.levels == 256 else np.array([0, 255])

    def named_convs(self):
        """(name, QConv) of every layer, as the model file stores them."""
        raise NotImplementedError

    def __getstate__(self):
        """Pickled (for worker processes) without its copies on other devices (CUDA tensors would
        travel by IPC) and without derived data, which is rebuilt on demand."""
        if self.device.type != "cpu":
            raise ValueError("only a model on the CPU goes to worker processes")
        return {**self.__dict__, "_on": {}, "_cache": {}}

    def on(self, device) -> "IntModel":
        """This model with its layers on `device`: a copy, made once per device (the CPU: itself). The
        head's outputs come back to the CPU, where the frequency tables are made for the coder, so the
        tables stay here."""
        device = torch.device(device)
        if self.host is not self:
            return self.host.on(device)
        if device.type == "cpu":
            return self
        require_gpu_path(self)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._on:
            m = copy.copy(self)
            for name, value in vars(self).items():
                if isinstance(value, QConv):
                    setattr(m, name, value.to(device))
                elif isinstance(value, list) and value and isinstance(value[0], QConv):
                    setattr(m, name, [c.to(device) for c in value])
                elif isinstance(value, dict) and value and isinstance(next(iter(value.values())), QConv):
                    setattr(m, name, {k: c.to(device) for k, c in value.items()})
            m.head = {k: v.to(device) for k, v in self.head.items()}
            m.device, m._cache, m._on = device, {}, {}
            self._on[device] = m
        return self._on[device]

    @property
    def pad(self) -> int:
        raise NotImplementedError

    def _offs(self, canvas: Canvas, conv_key) -> torch.Tensor:
        key = (canvas.Wp, conv_key)
        if key not in self._cache:
            self._cache[key] = canvas.offsets(taps_of(conv_key))
        return self._cache[key]

    def _gather(self, canvas: Canvas, conv: QConv, pos: torch.Tensor) -> torch.Tensor:
        """(n, taps) buffer rows that `conv` reads for outputs at flat positions `pos`."""
        return pos[:, None] + self._offs(canvas, conv.key)[None, :]

    def _head_trunk(self, canvas: Canvas, x: torch.Tensor, sites, group: int | None) -> torch.Tensor:
        """head1 (ReLU, masked 1x1, ReLU), then the output layer's biased int32 accumulators, at
        `sites` (Scattered or Dense); x is head1's input there (all channels, or the groups up to
        `group`)."""
        y = self.head1.requant(self.head1.matmul(x, group), group, self._cond(canvas, "head1", sites, group))
        return self.out.biased(self.out.matmul(sites.centre("h", group, y), group), group)

    def _cond(self, canvas: Canvas, layer: str, sites, group: int | None):
        """(accumulators, QConv) of a layer's conditional bias at `sites`."""
        conv = self.cond.get(layer)
        return None if conv is None else (conv.matmul(sites.taps(canvas.buf["u"], 1), group), conv)

    def condition(self, canvas: Canvas, tile: int, small: np.ndarray):
        """Fill the conditioning map of one tile from its part of the subsampled image (uint8
        (ceil(h/s), ceil(w/s), C)): the deconvolution, one int8 vector per full-resolution pixel."""
        s = self.cfg.scale
        h, w = canvas.sizes[tile]
        x = torch.from_numpy(small.reshape(-1, small.shape[2]).astype(np.int16) - 128).to(torch.int8)
        y = self.upsample.requant(self.upsample.matmul(x.contiguous()), None)      # (n, s*s*cond) phase-major
        hs, ws = small.shape[:2]
        y = y.view(hs, ws, s, s, -1).permute(0, 2, 1, 3, 4).reshape(hs * s, ws * s, -1)[:h, :w]
        i, j = np.divmod(np.arange(h * w), w)
        canvas.buf["u"].index_copy_(0, canvas.flat(np.full(h * w, tile), i, j), y.reshape(h * w, -1).contiguous())

    def _skip(self, canvas: Canvas, sites, group: int | None) -> torch.Tensor | None:
        if self.skip is None:
            return None
        return self.skip.biased(self.skip.matmul(sites.taps(canvas.buf["img"], self.skip.key, "img", group), group),
                                group)

    def _channel_cols(self, channel: int | None) -> slice:
        D = self.cfg.head_dim
        return slice(0, self.cfg.channels * D) if channel is None else slice(channel * D, (channel + 1) * D)

    def _head_params(self, acc: torch.Tensor, group: int | None, skip: torch.Tensor | None) -> torch.Tensor:
        c = self._channel_cols(group)
        D = self.cfg.head_dim
        mult, shift = self.head["mult"][c], self.head["shift"][c]
        if self.cfg.head == "softmax":
            q = requantize(acc, mult, shift, -(2 ** 30), 2 ** 30)
            return q.view(len(acc), -1, D)
        q = acc.view(len(acc), -1, 2)
        mult, shift = mult.view(-1, 2), shift.view(-1, 2)
        mu = requantize(q[..., 0], mult[:, 0], shift[:, 0], -(2 ** 30), 2 ** 30) + 128 * 16
        if skip is not None:
            c = self.skip.cols(group)
            mu += requantize(skip, self.head["skip_mult"][c], self.head["skip_shift"][c], -(2 ** 30), 2 ** 30)
        ls = requantize(q[..., 1], mult[:, 1], shift[:, 1], int(LS_MIN * LS_FRAC), len(self.invb_table) - 1 + int(LS_MIN * LS_FRAC))
        return torch.stack([mu.clamp(0, 255 * 16), ls - int(LS_MIN * LS_FRAC)], dim=-1)

    def min_bits_per_symbol(self) -> float:
        """No symbol costs less: the likeliest value gets at most exp_table[0] against at least
        exp_table[-1] for each of the other levels (for reporting and sanity bounds, not for coding)."""
        top, floor = int(self.exp_table[0]), int(self.exp_table[-1])
        return float(np.log2((top + (self.cfg.levels - 1) * floor) / top))

    def frequencies(self, params: torch.Tensor, dtype: torch.dtype = torch.int32) -> torch.Tensor:
        """Head outputs (n, D) of n sub-pixels -> integer frequency tables (n, levels), every entry >= 1.

        dtype=torch.float64 returns the same integers as float64 (exact: they are below 2^17), the form
        constriction takes, without a conversion pass."""
        table = self.exp_table if dtype == torch.int32 else self._exp_f64
        if params.device != table.device:     # the decoder's lanes on a GPU: the table goes there once
            table = self._copy_on(params.device, ("exp", dtype), table)
        if self.cfg.head == "softmax":
            excess = (params.amax(dim=1, keepdim=True) - params).clamp_(max=len(self.exp_table) - 1)
            return table.index_select(0, excess.view(-1).to(torch.int32)).view(excess.shape)
        # Laplace: each table is 256 consecutive entries of the precomputed rows (the same integers as
        # the formula); a sliding-window view makes the gather one row copy per table
        return self._laplace_windows(dtype).index_select(0, self._laplace_start(params))

    def _laplace_start(self, params: torch.Tensor) -> torch.Tensor:
        """Where each Laplace table starts in the flattened rows of `laplace_rows`."""
        return laplace_start(params[:, 0].to(torch.int64), params[:, 1].to(torch.int64))

    def _laplace_windows(self, dtype: torch.dtype) -> torch.Tensor:
        """Every 256-entry window of the flattened Laplace rows (a view, nothing copied)."""
        return self.laplace_rows(dtype).view(-1).unfold(0, self.cfg.levels, 1)

    def code_lengths(self, params: torch.Tensor, symbols: np.ndarray, freq: torch.Tensor) -> np.ndarray:
        """Each symbol's ideal code length in bits under its table (for reporting only). A Laplace
        table's total comes from precomputed prefix sums, so the tables are not read again."""
        sym = torch.from_numpy(symbols.astype(np.int64))
        hit = freq.gather(1, sym[:, None])[:, 0].to(torch.float64)
        if self.cfg.head == "softmax":
            total = freq.to(torch.float64).sum(dim=1)
        else:
            start = self._laplace_start(params)
            total = (self._laplace_prefix()[start + self.cfg.levels] - self._laplace_prefix()[start]).to(torch.float64)
        return (torch.log2(total) - torch.log2(hit)).numpy()

    def _laplace_prefix(self) -> torch.Tensor:
        """Prefix sums of the flattened Laplace rows (int64, CPU): a table starting at `start` has
        C(k) = prefix[start + k] - prefix[start]; strictly increasing (every entry is >= 1)."""
        key = "laplace_prefix"
        if key not in self._cache:
            rows = self.laplace_rows(torch.int32).view(-1).to(torch.int64)
            self._cache[key] = torch.cat([torch.zeros(1, dtype=torch.int64), rows.cumsum(0)])
        return self._cache[key]

    def cdf_tables(self, params: torch.Tensor | np.ndarray) -> "CumulativeTables":
        """Head outputs (n, D) on any device (or as a numpy array) -> the cumulative frequencies of their
        integer tables, on the CPU, in the form the rANS coder reads (`pixzip.rans`). A Laplace table's
        are two lookups in the rows' prefix sums: no table is built."""
        p = params.cpu().numpy() if torch.is_tensor(params) else params
        if self.cfg.head == "softmax":
            return DenseTables(self.cdf_tables_here(torch.from_numpy(p)).cum.numpy())
        start = laplace_start(p[:, 0].astype(np.int64), p[:, 1].astype(np.int64))   # in numpy: a hot path
        return PrefixTables(self._laplace_prefix().numpy(), start, self.cfg.levels)

    def cdf_tables_here(self, params: torch.Tensor) -> "CumulativeTables":
        """cdf_tables as int64 tensors on the device of `params` (the decoder's lanes on a GPU, with no
        round trip to the host): the same integers."""
        if self.cfg.head == "softmax":
            freq = self.frequencies(params).to(torch.int64)
            return DenseTables(torch.nn.functional.pad(freq.cumsum(1), (1, 0)))
        prefix = self._copy_on(params.device, "laplace_prefix", self._laplace_prefix())
        start = laplace_start(params[:, 0].to(torch.int64), params[:, 1].to(torch.int64))
        return PrefixTables(prefix, start, self.cfg.levels)

    def _copy_on(self, device: torch.device, key, table: torch.Tensor) -> torch.Tensor:
        """A CPU table's copy on `device` (the table itself on the CPU), made once."""
        if device.type == "cpu":
            return table
        key = ("copy", device, key)
        if key not in self._cache:
            self._cache[key] = table.to(device)
        return self._cache[key]

    def laplace_rows(self, dtype: torch.dtype) -> torch.Tensor:
        """The Laplace head's frequency tables, precomputed once: with mu16 = 16q + r, the frequency of
        value x depends only on (log-scale index, r, x - q), so row (idx, r) holds it for x - q in
        -255..255: EXP[min(len - 1, (|16(x - q) - r| * INVB[idx] >> 14) - (n_r * INVB[idx] >> 14))],
        n_r = min(r, 16 - r) being the distance from mu16 to the likeliest value. (|d| <= 4080 and
        INVB < 2^19: no overflow.)"""
        key = ("laplace", dtype)
        if key not in self._cache:
            k = torch.arange(-255, 256, dtype=torch.int64)[None, None, :]
            r = torch.arange(16, dtype=torch.int64)[None, :, None]
            invb = self.invb_table.to(torch.int64)[:, None, None]
            near = torch.minimum(r, 16 - r)
            excess = (((16 * k - r).abs() * invb) >> INVB_SHIFT) - ((near * invb) >> INVB_SHIFT)
            table = self.exp_table if dtype == torch.int32 else self._exp_f64
            self._cache[key] = table[excess.clamp_(0, len(self.exp_table) - 1)].reshape(-1, ROW).contiguous()
        return self._cache[key]


def laplace_start(mu16, idx):
    """Where the Laplace table of (mu16, log-scale index) starts in the flattened rows of
    `IntModel.laplace_rows`: row (idx, mu16 mod 16), at 255 - floor(mu16 / 16). int64 numpy arrays or
    tensors alike."""
    return (idx * 16 + mu16 % 16) * ROW + (255 - mu16 // 16)


class PrefixTables:
    """n tables given by where they start in one strictly increasing prefix-sum array: C(k) =
    prefix[start + k] - prefix[start]. Sliceable; `locate` is one search of the whole array. numpy
    arrays (the coder on the CPU) or int64 tensors (the decoder's lanes on a GPU) alike."""

    def __init__(self, prefix: np.ndarray, start: np.ndarray, levels: int, base=None, total=None):
        self.prefix, self.start, self.levels = prefix, start, levels
        self.base = prefix[start] if base is None else base
        self.total = prefix[start + levels] - self.base if total is None else total

    def __getitem__(self, part) -> "PrefixTables":
        return PrefixTables(self.prefix, self.start[part], self.levels, self.base[part], self.total[part])

    def at(self, k: np.ndarray) -> np.ndarray:
        return self.prefix[self.start + k] - self.base

    def locate(self, bound: np.ndarray):
        """For 0 < bound <= total: the last k with C(k) < bound, C(k) and C(k + 1)."""
        search = torch.searchsorted if torch.is_tensor(self.prefix) else np.searchsorted
        g = search(self.prefix, self.base + bound)          # first prefix >= target
        return g - 1 - self.start, self.prefix[g - 1] - self.base, self.prefix[g] - self.base


class DenseTables:
    """n tables given in full, C (n, levels + 1): a numpy array or an int64 tensor."""

    def __init__(self, cum: np.ndarray):
        self.cum = cum
        self.total = cum[:, -1]

    def __getitem__(self, part: slice) -> "DenseTables":
        return DenseTables(self.cum[part])

    def at(self, k: np.ndarray) -> np.ndarray:
        if torch.is_tensor(self.cum):
            return self.cum.gather(1, k[:, None])[:, 0]
        return np.take_along_axis(self.cum, k[:, None], 1)[:, 0]

    def locate(self, bound: np.ndarray):
        k = (self.cum < bound[:, None]).sum(1) - 1
        return k, self.at(k), self.at(k + 1)


CumulativeTables = PrefixTables | DenseTables


class IntPixelCNN(IntModel):
    """The integer PixelCNN. Built by `pixzip.export` or loaded from a model file."""

    def __init__(self, cfg: ModelConfig, layers: dict, head: dict, tables: dict):
        super().__init__(cfg, layers, head, tables)
        self.conv_a: list[QConv] = layers["conv_a"]
        self.conv_b: list[QConv] = layers["conv_b"]

    @classmethod
    def from_convs(cls, cfg: ModelConfig, convs: dict, head: dict, tables: dict) -> "IntPixelCNN":
        layers = {k: convs[k] for k in ("first", "head1", "out", "skip") if k in convs}
        layers["conv_a"] = [convs[f"conv_a{b}"] for b in range(cfg.blocks)]
        layers["conv_b"] = [convs[f"conv_b{b}"] for b in range(cfg.blocks)]
        if "upsample" in convs:
            layers["upsample"] = convs["upsample"]
            layers["cond"] = {k[5:]: v for k, v in convs.items() if k.startswith("cond.")}
        return cls(cfg, layers, head, tables)

    def named_convs(self):
        yield "first", self.first
        for b, (ca, cb) in enumerate(zip(self.conv_a, self.conv_b)):
            yield f"conv_a{b}", ca
            yield f"conv_b{b}", cb
        yield "head1", self.head1
        yield "out", self.out
        if self.skip is not None:
            yield "skip", self.skip
        if self.upsample is not None:
            yield "upsample", self.upsample
            for k, v in self.cond.items():
                yield f"cond.{k}", v

    # -- scheduling -----------------------------------------------------------------------------------
    @property
    def pad(self) -> int:
        return max(self.cfg.first_kernel, self.cfg.block_kernel) // 2

    @property
    def slope(self) -> int:
        """Wavefront slope s: pixel (i, j) only needs pixels of smaller t = j + s*i."""
        return self.cfg.slope or self.pad + 1

    @property
    def wide_stream(self) -> bool:
        """A 16-bit residual stream s0..sB, read by the layers through int8 buffers r0..rB holding the
        ReLU of the stream requantised (head["read_mult"], head["read_shift"], one per reader)."""
        return self.cfg.stream_bits == 16

    def new_canvas(self, sizes: list[tuple[int, int]]) -> Canvas:
        # only what a layer reads off-centre needs a buffer: the image, and the stream (8-bit) or its
        # int8 reads (16-bit); centre-only (1x1) reads take values kept in hand
        C, h, B = self.cfg.channels, self.cfg.hidden, self.cfg.blocks
        stream = "r" if self.wide_stream else "s"
        channels = {"img": C, **{f"{stream}{b}": h for b in range(B + 1)}}
        if self.cfg.cond:
            channels["u"] = self.cfg.cond
        return Canvas(sizes, self.pad, channels, self.device)

    # -- the network ----------------------------------------------------------------------------------
    def _conv(self, conv: QConv, canvas: Canvas, x: torch.Tensor, sites, group, name: str) -> torch.Tensor:
        """One requantised layer: inputs x (taps, or centre values) -> outputs of `group`."""
        return conv.requant(conv.matmul(x, group), group, self._cond(canvas, name, sites, group))

    def _stream(self, canvas: Canvas, b: int, sites, y: torch.Tensor, cols: slice) -> tuple[str, torch.Tensor]:
        """Store stream s{b} (values y, columns `cols`) where the next layers read it; returns that
        buffer's name and its values here. A 16-bit stream is read through its int8 ReLU."""
        if self.wide_stream:   # one table lookup: the requantisation of every value 0..32767, precomputed
            y = self._read_table(b).index_select(0, y.clamp(min=0).reshape(-1).to(torch.int32)).view(y.shape)
        name = f"r{b}" if self.wide_stream else f"s{b}"
        sites.write(canvas.buf[name], cols, y)
        return name, y

    def _read_table(self, b: int) -> torch.Tensor:
        """int8 ReLU read of stream b for every non-negative int16 value: exactly
        requantize(v, read_mult[b], read_shift[b], 0, 127), tabulated once (32 KB)."""
        key = ("read", b)
        if key not in self._cache:
            v = torch.arange(1 << 15, dtype=torch.int64, device=self.device)
            self._cache[key] = requantize(v, self.head["read_mult"][b], self.head["read_shift"][b], 0, 127).to(torch.int8)
        return self._cache[key]

    def gather_index(self, canvas: Canvas, pos: torch.Tensor) -> Scattered:
        """The decoder's sites at flat positions `pos`; their gather indices are built once per
        wavefront and reused for the R, G and B steps."""
        return Scattered(self, canvas, pos)

    def encode_params(self, canvas: Canvas, pos: torch.Tensor) -> torch.Tensor:
        """The encoder's pass: head outputs (n, channels, D) at flat positions `pos` (every real pixel
        of the canvas, in canvas.pixels() order), all groups at once, evaluated densely."""
        return torch.cat([self.forward(canvas, run, None)[run.valid[:, 0].bool()]
                          for run in dense_runs(self, canvas, pos)])

    def forward(self, canvas: Canvas, sites, group: int | None = None) -> torch.Tensor:
        """Evaluate every layer at `sites` (Scattered or Dense) for one channel group
        (None: all groups; a spatial trunk, channel_deps="skip", always runs for all).

        The image buffer must already hold every pixel these positions may see. Returns the head's
        integer outputs, (n, channels, D): (mu16, log-scale index) for the Laplace head, logits in 1/16
        nat for the softmax head.
        """
        trunk_group = group if self.cfg.channel_deps == "masks" else None
        acc = self._trunk(canvas, sites, trunk_group)
        if group is not None and trunk_group is None:
            acc = acc[:, self._channel_cols(group)]
        return self._head_params(acc, group, self._skip(canvas, sites, group))

    def step_params(self, canvas: Canvas, index: Scattered, channel: int, cache: dict) -> torch.Tensor:
        """The decoder's step: head outputs (n, D) of one channel at one wavefront. With a spatial trunk
        the trunk runs once per wavefront (cached for the next channels); only the skip predictor, which
        sees the channels decoded so far, runs per channel."""
        if self.cfg.channel_deps == "masks":
            return self.forward(canvas, index, channel)[:, 0]
        if channel == 0:
            cache["acc"] = self._trunk(canvas, index, None)
        acc = cache["acc"][:, self._channel_cols(channel)]
        return self._head_params(acc, channel, self._skip(canvas, index, channel))[:, 0]

    def _trunk(self, canvas: Canvas, sites, group: int | None) -> torch.Tensor:
        """All trunk layers, then the output layer's biased int32 accumulators."""
        cols = self.first.cols(group)
        y = self._conv(self.first, canvas, sites.taps(canvas.buf["img"], self.first.key, "img", group), sites,
                       group, "first")
        src, read = self._stream(canvas, 0, sites, y, cols)
        for b, (ca, cb) in enumerate(zip(self.conv_a, self.conv_b)):
            mid = self._conv(ca, canvas, sites.taps(canvas.buf[src], ca.key, src, group), sites, group, f"conv_a{b}")
            mid = sites.centre(f"mid{b}", group, mid)
            # the residual: this group's stream values at these sites are the y in hand
            y = residual_add(y, self._conv(cb, canvas, mid, sites, group, f"conv_b{b}"))
            src, read = self._stream(canvas, b + 1, sites, y, cols)
        return self._head_trunk(canvas, sites.centre("head", group, read), sites, group)


def require_gpu_path(model):
    """The GPU path runs PixelCNN models only (the LSTM and multi-scale engines are not ported)."""
    if not isinstance(model, IntPixelCNN):
        arch = getattr(model, "arch", None) or model.cfg.arch
        raise ValueError(f"GPU coding is implemented for PixelCNN models, not {arch}: use --device cpu")


def exp_table() -> torch.Tensor:
    """2^16 * exp(-k/16) rounded, floor 1, until it reaches 1. Built once at export, stored in the model
    file, so the coding path never evaluates exp()."""
    vals = []
    k = 0
    while True:
        v = max(1, int(round((1 << PROB_BITS) * np.exp(-k / 16))))
        vals.append(v)
        if v == 1:
            return torch.tensor(vals, dtype=torch.int32)
        k += 1


def invb_table() -> torch.Tensor:
    """2^14 / exp(ls) for every log-scale step ls = LS_MIN + i / LS_FRAC."""
    from .model import LS_MAX
    n = int((LS_MAX - LS_MIN) * LS_FRAC) + 1
    return torch.tensor([int(round((1 << INVB_SHIFT) * np.exp(-(LS_MIN + i / LS_FRAC)))) for i in range(n)],
                        dtype=torch.int32)


class IntMultiScale:
    """A multi-scale model: `small` codes the subsampled image (every scale-th pixel), `big` (a
    conditional IntPixelCNN) the full image given it. The codec runs the two stages one after the other;
    a plane's streams are the small image's tiles, then the full image's."""

    def __init__(self, cfg: ModelConfig, small: IntModel, big: IntPixelCNN):
        self.cfg, self.small, self.big = cfg, small, big
        self.head = {**{f"small.{k}": v for k, v in small.head.items()}, **{f"big.{k}": v for k, v in big.head.items()}}
        self.tables = {**big.tables, **small.tables}
        self.symbol_values = big.symbol_values

    @classmethod
    def from_convs(cls, cfg: ModelConfig, convs: dict, head: dict, tables: dict) -> "IntMultiScale":
        parts = []
        for prefix, part in zip(("small.", "big."), cfg.parts()):
            sub = {k[len(prefix):]: v for k, v in convs.items() if k.startswith(prefix)}
            sub_head = {k[len(prefix):]: v for k, v in head.items() if k.startswith(prefix)}
            parts.append(int_model_class(part.arch).from_convs(part, sub, sub_head, tables))
        return cls(cfg, *parts)

    def named_convs(self):
        for prefix, part in (("small", self.small), ("big", self.big)):
            for name, conv in part.named_convs():
                yield f"{prefix}.{name}", conv

    def subsample(self, plane: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(plane[::self.cfg.scale, ::self.cfg.scale])

    def small_shape(self, height: int, width: int) -> tuple[int, int]:
        s = self.cfg.scale
        return -(-height // s), -(-width // s)

    def min_bits_per_symbol(self) -> float:
        return min(self.small.min_bits_per_symbol(), self.big.min_bits_per_symbol())


class IntEnsemble:
    """An ensemble: the equal-weight mixture of its members' distributions (PixelCNNs with the same
    channels, levels and decode slope). Each member's table is scaled to the coder's total 2^24,
    q_m(k) = floor(C_m(k) * 2^24 / S_m), and the mixture is C(k) = floor(sum_m q_m(k) / n): strictly
    increasing, total 2^24. Only the native CPU coder (pixzip/_native.c) runs it: the members' walks in
    lockstep, one mixture per sub-pixel (`codec` refuses it elsewhere with a one-line error)."""

    MAX_MEMBERS = 4        # the native coder's bound

    def __init__(self, members: list[IntPixelCNN]):
        if not 2 <= len(members) <= self.MAX_MEMBERS or not all(isinstance(m, IntPixelCNN) for m in members):
            raise ValueError(f"an ensemble has 2 to {self.MAX_MEMBERS} PixelCNN members")
        first = members[0]
        if any((m.cfg.channels, m.cfg.levels, m.slope) != (first.cfg.channels, first.cfg.levels, first.slope)
               for m in members):
            raise ValueError("an ensemble's members must share channels, levels and decode slope")
        self.members = list(members)
        self.cfg = first.cfg            # channels, levels, symbols: the members'
        self.slope = first.slope
        self.symbol_values = first.symbol_values
        self.device = torch.device("cpu")        # where the codec places it: the native coder is CPU only

    @property
    def arch(self) -> str:
        return "ensemble"

    def named_convs(self):
        for k, m in enumerate(self.members):
            for name, conv in m.named_convs():
                yield f"m{k}.{name}", conv

    def min_bits_per_symbol(self) -> float:
        """A mixture gives no symbol more than its likeliest member does (sanity bounds only)."""
        return min(m.min_bits_per_symbol() for m in self.members)


def int_model_class(arch: str):
    """The integer class of an architecture (all have `from_convs`)."""
    if arch == "pixelcnn":
        return IntPixelCNN
    if arch == "multiscale":
        return IntMultiScale
    from .engine_rnn import IntDiagBiLSTM, IntRowLSTM      # (engine_rnn builds on this module)
    return {"rowlstm": IntRowLSTM, "diagbilstm": IntDiagBiLSTM}[arch]
