"""Integer convolutions: int8 weights and activations, int32 accumulation, requantisation by an integer
multiply and an arithmetic shift.

Everything that decides a probability is integer arithmetic. `torch._int_mm` is exact on the CPU; on a
GPU the int8 products run in float32, exact by construction (`float_int_mm`). Integer addition is
associative, so any device, thread count, kernel or batch composition gives the same integers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch

from .record import conv_taps  # noqa: F401  (the causal pattern, defined with the layers' records)


class GroupParams(NamedTuple):
    """One channel group's slice of a QConv, with the bias folded into the rounding offset."""
    weight: torch.Tensor           # int8 (taps * cin, cout_group); on CUDA the same values as float32
    bias: torch.Tensor             # int32
    mult: torch.Tensor             # int64
    offset: torch.Tensor           # int64: bias * mult + 2^(shift - 1)
    shift: torch.Tensor            # int64
    weight_low: torch.Tensor | None
    scale: torch.Tensor | None     # float64 mult * 2^-shift, where `float_requant_exact` holds (CPU only)


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

    @classmethod
    def from_record(cls, conv) -> "QConv":
        """The layer of a `nets.record.ConvRecord`, its tensors sharing the record's arrays."""
        low = None if conv.weight_low is None else torch.from_numpy(conv.weight_low)
        return cls(k=conv.k, weight=torch.from_numpy(conv.weight), bias=torch.from_numpy(conv.bias),
                   mult=torch.from_numpy(conv.mult), shift=torch.from_numpy(conv.shift), relu_in=conv.relu_in,
                   lo=conv.lo, hi=conv.hi, groups=conv.groups, weight_low=low, taps=conv.taps)

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
