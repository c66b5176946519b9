"""The adaptive entropy stage (issue 20): bitwise context mixing driven by the network's prediction.

This file is the specification. The C stage (pixzip/csrc/adaptive.c) computes the same integers and
tests/test_adaptive.py checks that it writes the same bytes; this module also decodes (slowly) where no
compiled coder is installed, so no file depends on the C build.

What it codes. Sub-pixels in the decoder's order (wavefront t = j + slope*i, then channel, then row:
`decoding_order`), each with the network's head outputs: mu16 (mean in 1/16 grey level, 0..4080) and
idx (log-scale index, 0 = the smallest scale). The network's Laplace is not the coding distribution: its
mean is the centre of the binarisation, both outputs are contexts, and its probability of each decision
is one input of the mixers, so the stage learns how far to trust it on this image (docs/ADAPTIVE.md has
the measurements).

Binarisation (`_code_subpixel`): p = round(mu), r = x - p, then binary decisions, each at a *node*
(its position in the decision tree): zero flag (r == 0), sign, the exponent e = floor(log2 |r|) in
unary, the e mantissa bits below the leading one, most significant first. A decision the range 0..255
forces (no negative values when p = 0, no exponent or mantissa bit that would pass 0 or 255) is not
coded. About 3.9 decisions per sub-pixel on a CBSD68 photograph.

Probability of a decision (`_Stage.code_bit`), every step integer:
- contexts: each a hash of a few quantised *features* of the sub-pixel's neighbourhood (`features`),
  selecting a block of 32 slots in its own table; the decision's node picks the slot. A slot is an
  adaptive bit counter (22-bit probability, 10-bit count, rate 1/(n + 1.5) down to 1/(limit + 1.5));
  the block's first slot holds a check of the hash, and a block found holding another context's check
  is reset (a context never seen contributes probability 1/2, i.e. nothing, to the mixer);
- the network's own probability of the decision: its Laplace table's frequency (the model's integer
  prefix sums) of the values still possible that give a 1, over that of all of them;
- mixers: logistic mixing of the counters' stretch(p), the network's, and a bias, weights (16.16 fixed
  point) chosen by the node and one small feature per mixer, trained online on the coding error; the
  network's weight starts at 1 and the contexts' small, so a fresh state codes about as the network
  alone (small images lose nothing) and learns from there; several mixers are combined by a final
  mixer chosen by the node;
- APM/SSE: a table of 33 probabilities per (node, feature) interpolated over stretch(p), trained on
  the bit; the coded probability is (mixer + 3 * APM) / 4, clamped to [1, 4095] of 4096;
- coder: a carry-less 32-bit binary arithmetic coder, 12-bit probabilities, a minimal flush.

Negative numbers are shifted right with floor semantics (Python's >>; the C compilers' arithmetic shift).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

M32 = 0xFFFFFFFF
PROB_BITS = 12                    # probabilities of a 1 bit, in 1/4096
PROB_ONE = 1 << PROB_BITS
ST_MAX = 2047                     # stretch domain: ln(p / (1 - p)) in 1/256, clamped to +-2047

# ---- logistic tables ------------------------------------------------------------------------------------

# round(4096 / (1 + e^(-x))) at x = -8, -7.5, ..., 8: the only constants behind squash and stretch
# (tests/test_adaptive.py recomputes them)
SQUASH_POINTS = (1, 2, 4, 6, 10, 17, 27, 45, 74, 120, 194, 311, 488, 747, 1102, 1546, 2048,
                 2550, 2994, 3349, 3608, 3785, 3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095)


def squash(d: int) -> int:
    """4096 / (1 + e^(-d/256)) by linear interpolation between SQUASH_POINTS; d clamped to +-2047."""
    if d > ST_MAX:
        d = ST_MAX
    if d < -ST_MAX:
        d = -ST_MAX
    w = d & 127
    k = (d >> 7) + 16
    return (SQUASH_POINTS[k] * (128 - w) + SQUASH_POINTS[k + 1] * w + 64) >> 7


def _stretch_table() -> tuple[int, ...]:
    """stretch(p) for p in 0..4095: the smallest d with squash(d) >= p (squash's inverse, integer)."""
    table = [0] * PROB_ONE
    p = 0
    for d in range(-ST_MAX, ST_MAX + 1):
        v = squash(d)
        while p <= v:
            table[p] = d
            p += 1
    while p < PROB_ONE:
        table[p] = ST_MAX
        p += 1
    return tuple(table)


STRETCH = _stretch_table()

# ---- adaptive bit counters --------------------------------------------------------------------------------

COUNTER_INIT = (1 << 21) << 10                          # probability 1/2, count 0
RECIP = tuple((1 << 17) // (2 * n + 3) for n in range(1024))   # 2^16 / (n + 1.5)


def counter_update(slot: int, y: int, limit: int) -> int:
    """A counter (22-bit probability << 10 | count) after bit y: p += (y - p) / (count + 1.5)."""
    p, n = slot >> 10, slot & 1023
    p += (((y << 22) - p) * RECIP[n]) >> 16
    if n < limit:
        n += 1
    return (p << 10) | n


# ---- the decision tree ----------------------------------------------------------------------------------

NODES = 32                        # slots per context block (128 bytes): the check, then nodes 1..30
CHECK_SLOT = 0                    # beside the commonest nodes: most sub-pixels touch one cache line
NODE_ZERO, NODE_SIGN = 1, 2


def node_exponent(negative: int, k: int) -> int:
    """Unary exponent bit k (is |r| >= 2^(k+1)?), k = 0..6, per sign: nodes 3..16."""
    return 3 + 7 * negative + k


def node_mantissa(e: int, b: int) -> int:
    """Mantissa bit b of exponent e (e = 1..7): the leading one, or any lower bit: nodes 17..30."""
    return 17 + 2 * (e - 1) + (b != e - 1)


# ---- features of a sub-pixel's neighbourhood ---------------------------------------------------------------

(F_ZERO, F_IDX, F_IDX2, F_IDX8, F_FRAC, F_CH, F_BRIGHT,
 F_QRW, F_QRN, F_QRNW, F_QRNE, F_QRWW, F_QRNN, F_QR1, F_QR2, F_ACT, F_GRAD,
 F_DW, F_DN, F_DNW, F_DNE, F_DPLANE, F_DNNE, F_DAVG, F_DWNE, F_DNN, F_DWW, F_DCW, F_DCN,
 F_RW, F_RN, F_R1, F_QRWP, F_QRNP, F_QR1U, F_LMS, F_LMSU) = range(37)
N_FEATURES = 37
# features that select mixer weight sets or APM tables: their number of values (all >= 0)
SELECTOR_SIZES = {F_ZERO: 1, F_IDX2: 37, F_IDX8: 10, F_CH: 3, F_ACT: 11, F_QR1U: 15, F_GRAD: 11, F_LMSU: 15}
N_IDX = 73                        # log-scale indices 0..72 (engine: LS_MIN..LS_MAX in 1/8)


def qres(r: int) -> int:
    """A residual or difference in signed logarithmic buckets: 0, +-1, +-2, +-3..4, ..., +-33..: -7..7."""
    a = -r if r < 0 else r
    b = 0 if a == 0 else min(7, (a - 1).bit_length() + 1)
    return -b if r < 0 else b


def qlog(u: int) -> int:
    """A non-negative sum in logarithmic buckets 0..10."""
    return 0 if u == 0 else min(10, (u - 1).bit_length() + 1)


def clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else (hi if v > hi else v)


def rounded_mean(mu16: int) -> int:
    """round(mu) in grey levels, 0..255: the centre of the binarisation."""
    return min(255, (mu16 + 8) >> 4)


class TileData:
    """A tile's coded values and residuals so far (flat, (i * w + j) * C + c). In the decoding order
    every neighbour used (W, WW, NW, N, NN, NE, NNE: earlier wavefronts when slope >= 2) and every
    earlier channel of the pixel is known; outside the tile a value reads as the current prediction p
    and a residual as 0."""

    def __init__(self, h: int, w: int, channels: int):
        self.h, self.w, self.C = h, w, channels
        self.value = [0] * (h * w * channels)
        self.res = [0] * (h * w * channels)

    def at(self, i: int, j: int, c: int):
        """(value, residual) at (i, j, c), or None outside the tile."""
        if i < 0 or j < 0 or j >= self.w:
            return None
        k = (i * self.w + j) * self.C + c
        return self.value[k], self.res[k]


class ResidualPredictor:
    """What this image's residuals say about the next one: a normalised LMS filter per channel over the
    neighbours' residuals, the pixel's earlier channels' residuals and the neighbours' differences to p,
    learning online (weights 16.16). The network is one fixed predictor for every image; this one fits
    the image in hand (e.g. a network that undershoots this image's edges), and its prediction, in
    1/16 grey level, is a feature (F_LMS). Part of the state: it carries along a chain of tiles."""

    INPUTS = 12
    W_LIMIT = 1 << 18

    def __init__(self, step: int):
        self.step = step                   # adaptation rate 2^-step
        self.w = [[0] * self.INPUTS for _ in range(4)]
        self.u, self.pred = [0] * self.INPUTS, 0

    def predict(self, c: int, u: list[int]) -> int:
        self.u = u
        self.pred = clamp(sum(w * x for w, x in zip(self.w[c & 3], u)) >> 12, -2048, 2048)
        return self.pred

    def update(self, c: int, r: int) -> None:
        norm = 16 + sum(x * x for x in self.u)
        g = (clamp(16 * r - self.pred, -1024, 1024) * 65536) // norm
        w = self.w[c & 3]
        for k, x in enumerate(self.u):
            w[k] = clamp(w[k] + ((g * x) >> (4 + self.step)), -self.W_LIMIT, self.W_LIMIT)


def features(tile: TileData, i: int, j: int, c: int, mu16: int, idx: int,
             lms: ResidualPredictor | None = None) -> list[int]:
    """The quantised neighbourhood of sub-pixel (i, j, c): N_FEATURES small integers (with `lms`, the
    residual predictor's inputs are set and its prediction taken)."""
    p = rounded_mean(mu16)

    def nb(di, dj, cc=c):
        got = tile.at(i + di, j + dj, cc)
        return (p, 0) if got is None else got

    (W, rW), (N, rN), (NW, rNW), (NE, rNE) = nb(0, -1), nb(-1, 0), nb(-1, -1), nb(-1, 1)
    (WW, rWW), (NN, rNN), (NNE, _) = nb(0, -2), nb(-2, 0), nb(-2, 1)
    F = [0] * N_FEATURES
    F[F_IDX], F[F_IDX2], F[F_IDX8] = idx, idx >> 1, idx >> 3
    F[F_FRAC] = mu16 - 16 * p + 8
    F[F_CH], F[F_BRIGHT] = c, p >> 4
    F[F_QRW], F[F_QRN], F[F_QRNW], F[F_QRNE] = qres(rW), qres(rN), qres(rNW), qres(rNE)
    F[F_QRWW], F[F_QRNN] = qres(rWW), qres(rNN)
    F[F_ACT] = qlog(abs(rW) + abs(rN) + abs(rNW) + abs(rNE))
    F[F_GRAD] = qlog(abs(W - NW) + abs(N - NW) + abs(NE - N))
    F[F_DW], F[F_DN], F[F_DNW], F[F_DNE] = qres(W - p), qres(N - p), qres(NW - p), qres(NE - p)
    F[F_DPLANE] = qres(clamp(W + N - NW, 0, 255) - p)
    F[F_DNNE] = qres(clamp(N + NE - NNE, 0, 255) - p)
    F[F_DAVG] = qres(((N + NE + 1) >> 1) - p)
    F[F_DWNE] = qres(clamp(W + NE - N, 0, 255) - p)
    F[F_DNN] = qres(clamp(2 * N - NN, 0, 255) - p)
    F[F_DWW] = qres(clamp(2 * W - WW, 0, 255) - p)
    F[F_RW], F[F_RN] = clamp(rW, -12, 12), clamp(rN, -12, 12)
    if c > 0:                     # the earlier channels of this pixel, and of W and N
        here = (i * tile.w + j) * tile.C
        x1, r1 = tile.value[here + c - 1], tile.res[here + c - 1]
        (W1, rW1), (N1, rN1) = nb(0, -1, c - 1), nb(-1, 0, c - 1)
        F[F_QR1], F[F_R1] = qres(r1), clamp(r1, -12, 12)
        F[F_QR2] = qres(tile.res[here + c - 2]) if c > 1 else 0
        # colour-guided predictors W_c + (x_{c-1} - W_{c-1}): where W is outside, W = W1 = p: no guide
        F[F_DCW] = qres(clamp(W + x1 - W1, 0, 255) - p) if j > 0 else 0
        F[F_DCN] = qres(clamp(N + x1 - N1, 0, 255) - p) if i > 0 else 0
        F[F_QRWP], F[F_QRNP] = qres(rW1), qres(rN1)
    F[F_QR1U] = F[F_QR1] + 7
    if lms is not None:
        here = (i * tile.w + j) * tile.C
        u = [rW, rN, rNW, rNE, rWW, rNN, tile.res[here + c - 1] if c > 0 else 0,
             tile.res[here + c - 2] if c > 1 else 0, W - p, N - p, NW - p, NE - p]
        F[F_LMS] = qres(lms.predict(c, u) >> 2)
        F[F_LMSU] = F[F_LMS] + 7
    return F


# ---- effort levels -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Level:
    """What one effort level of the stage computes. Part of the format: a file names its level."""
    contexts: tuple[tuple[int, ...], ...]    # each context: the features it hashes (1 to 4)
    mixers: tuple[int, ...]                  # each mixer: the feature selecting its weight set (x node)
    apms: tuple[int, ...]                    # each APM: the feature selecting its table (x node)
    max_table_bits: int                      # blocks per context table at most 2^bits
    counter_limit: int                       # counters adapt at 1/(n + 1.5) down to 1/(limit + 1.5)
    mixer_rate: int                          # error multiplier of the mixers' training
    final_rate: int                          # ... of the final mixer
    mixer_init: int                          # initial weight of every context input (16.16)
    net_init: int                            # initial weight of the network's own probability (16.16)
    apm_rate: int                            # APM entries move by 1/2^rate of their error
    lms: int = 0                             # the residual predictor's step 2^-lms (0: none, F_LMS is 0)


LEVELS = {
    1: Level(contexts=((F_IDX, F_FRAC), (F_IDX2, F_QRW, F_QRN), (F_QRN, F_QRNW, F_QRNE, F_IDX8),
                       (F_CH, F_QR1, F_QR2, F_IDX8), (F_ACT, F_GRAD, F_CH), (F_DW, F_DN, F_IDX8),
                       (F_DPLANE, F_DNNE, F_IDX8), (F_CH, F_DCW, F_DCN), (F_QRW, F_QRWW, F_QRNN, F_QRN),
                       (F_BRIGHT, F_IDX8, F_CH)),
             mixers=(F_IDX8, F_ACT), apms=(F_IDX2,), max_table_bits=14, counter_limit=255,
             mixer_rate=24, final_rate=10, mixer_init=4000, net_init=65536, apm_rate=7),
    2: Level(contexts=((F_IDX, F_FRAC), (F_IDX2, F_QRW, F_QRN), (F_QRN, F_QRNW, F_QRNE, F_IDX8),
                       (F_CH, F_QR1, F_QR2, F_IDX8), (F_ACT, F_GRAD, F_CH), (F_DW, F_DN, F_IDX8),
                       (F_DPLANE, F_DNNE, F_IDX8), (F_CH, F_DCW, F_DCN), (F_QRW, F_QRWW, F_QRNN, F_QRN),
                       (F_BRIGHT, F_IDX8, F_CH),
                       (F_DNW, F_DNE, F_DAVG), (F_DWNE, F_DNN, F_DWW), (F_RW, F_RN, F_IDX8), (F_R1, F_CH, F_QRWP),
                       (F_QRWP, F_QRNP, F_QR1, F_CH), (F_IDX, F_FRAC, F_QRW, F_QRN), (F_DCW, F_QR1, F_IDX8),
                       (F_ACT, F_IDX2), (F_DW, F_DN, F_DNW, F_DNE), (F_IDX2, F_QR1, F_CH)),
             mixers=(F_IDX8, F_ACT, F_QR1U), apms=(F_IDX2, F_ACT), max_table_bits=15, counter_limit=255,
             mixer_rate=24, final_rate=10, mixer_init=2500, net_init=65536, apm_rate=7),
}
# Levels 3 and 4: levels 1 and 2 with the residual predictor and one context on its prediction (session 13:
# -0.32 % / -0.28 % on CBSD68, -0.6 % / -0.3 % on the kinds, docs/ADAPTIVE.md)
LEVELS[3] = replace(LEVELS[1], contexts=LEVELS[1].contexts + ((F_LMS, F_IDX8),), lms=5)
LEVELS[4] = replace(LEVELS[2], contexts=LEVELS[2].contexts + ((F_LMS, F_IDX8),), lms=5)


def table_bits(level: Level, n_subpixels: int) -> int:
    """Blocks per context table (log2) for a state that will code n_subpixels: about one per four
    sub-pixels, between 2^10 and 2^max_table_bits (small images do not clear megabytes)."""
    return max(10, min(level.max_table_bits, n_subpixels.bit_length() - 2))


def ctx_hash(k: int, values) -> int:
    """32 well-mixed bits of context k's feature values."""
    h = ((k + 1) * 0x9E3779B1) & M32
    for v in values:
        h = ((h + (v & 0xFFFF)) * 0x2545F491) & M32
        h ^= h >> 15
    h ^= h >> 16                  # a final avalanche, so that the top bits (the block) and the low
    h = (h * 0x7FEB352D) & M32    # bits (the check) are independent
    h ^= h >> 15
    h = (h * 0x846CA68B) & M32
    return h ^ (h >> 16)


# ---- the binary arithmetic coder ---------------------------------------------------------------------------

def _split(x1: int, x2: int, p: int) -> int:
    """The last value of the 1-bit's part of [x1, x2]: about p/4096 of it."""
    r = x2 - x1
    return x1 + (r >> 12) * p + (((r & 0xFFF) * p) >> 12)


class BinaryEncoder:
    """Carry-less 32-bit arithmetic coder: [x1, x2] narrows; equal leading bytes are written."""

    def __init__(self):
        self.x1, self.x2 = 0, M32
        self.out = bytearray()

    def code(self, p: int, y: int) -> int:
        mid = _split(self.x1, self.x2, p)
        if y:
            self.x2 = mid
        else:
            self.x1 = mid + 1
        while ((self.x1 ^ self.x2) & 0xFF000000) == 0:
            self.out.append(self.x2 >> 24)
            self.x1 = (self.x1 << 8) & M32
            self.x2 = ((self.x2 << 8) & M32) | 255
        return y

    def finish(self) -> bytes:
        """The fewest bytes k (0..4) such that they, followed by the zeros the decoder reads past the
        end, make a number in [x1, x2]."""
        for k in range(5):
            unit = 1 << (32 - 8 * k)
            v = -(-self.x1 // unit) * unit
            if v <= self.x2:
                self.out += (v >> (32 - 8 * k)).to_bytes(k, "big") if k else b""
                return bytes(self.out)
        raise AssertionError("unreachable: k = 4 gives x1")


class BinaryDecoder:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0
        self.x1, self.x2, self.x = 0, M32, 0
        for _ in range(4):
            self.x = (self.x << 8) | self._byte()

    def _byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def code(self, p: int, y=None) -> int:
        mid = _split(self.x1, self.x2, p)
        y = int(self.x <= mid)
        if y:
            self.x2 = mid
        else:
            self.x1 = mid + 1
        while ((self.x1 ^ self.x2) & 0xFF000000) == 0:
            self.x1 = (self.x1 << 8) & M32
            self.x2 = ((self.x2 << 8) & M32) | 255
            self.x = ((self.x << 8) & M32) | self._byte()
        return y

    def exact(self) -> bool:
        """Whether the stream was used to its end, and past it only by the flush's missing bytes
        (0..4): false for most truncated, extended or corrupted streams."""
        return len(self.data) <= self.pos <= len(self.data) + 4


# ---- the adaptive state ---------------------------------------------------------------------------------------

class State:
    """Everything the stage learns: context tables, mixer weights, APM tables. It may code one tile
    (reset per tile) or a fixed chain of tiles one after another; the format decides which, never
    the thread count. Tables are dicts here (a block or weight set not present is in its initial
    state); the C stage holds the same numbers in arrays."""

    def __init__(self, level: int | Level, n_subpixels: int):
        self.level = LEVELS[level] if isinstance(level, int) else level
        self.bits = table_bits(self.level, n_subpixels)
        self.tables = [dict() for _ in self.level.contexts]
        self.weights = [dict() for _ in self.level.mixers]
        self.final = dict()
        self.apm = [dict() for _ in self.level.apms]
        self.lms = ResidualPredictor(self.level.lms) if self.level.lms else None

    def block(self, k: int, h: int) -> list[int]:
        """Context k's block for hash h: found, or (re)initialised with h's check."""
        index, check = h >> (32 - self.bits), (h & 0xFFFF) | 0x10000
        blk = self.tables[k].get(index)
        if blk is None or blk[CHECK_SLOT] != check:
            blk = [check] + [COUNTER_INIT] * (NODES - 1)
            self.tables[k][index] = blk
        return blk

    def mixer_weights(self, m: int, key: int) -> list[int]:
        ws = self.weights[m].get(key)
        if ws is None:
            # the network's input starts near weight 1 and the contexts' small: a fresh state codes about
            # as the network's Laplace alone, and learns from there (small images, a tile's first rows)
            ws = [self.level.mixer_init] * len(self.level.contexts) + [self.level.net_init, 0]
            self.weights[m][key] = ws
        return ws

    def final_weights(self, node: int) -> list[int]:
        ws = self.final.get(node)
        if ws is None:
            ws = [65536 // len(self.level.mixers)] * len(self.level.mixers)
            self.final[node] = ws
        return ws

    def apm_table(self, a: int, key: int) -> list[int]:
        t = self.apm[a].get(key)
        if t is None:
            t = [squash((k - 16) * 128) * 16 for k in range(33)]
            self.apm[a][key] = t
        return t


BIAS_INPUT = 256
W_LIMIT = 1 << 19                 # mixer weights stay within +-8.0


def _dot(ws, xs) -> int:
    return clamp(sum(w * x for w, x in zip(ws, xs)) >> 16, -ST_MAX, ST_MAX)


def _train(ws, xs, err: int) -> None:
    for k, x in enumerate(xs):
        ws[k] = clamp(ws[k] + ((x * err + 0x8000) >> 16), -W_LIMIT, W_LIMIT)


class _Stage:
    """One sub-pixel's coding: its context blocks, then its decisions."""

    def __init__(self, state: State, coder, F: list[int], cdf: np.ndarray, start: int):
        lv = state.level
        self.state, self.coder, self.F = state, coder, F
        self.cdf, self.start = cdf, start
        self.blocks = [state.block(k, ctx_hash(k, [F[f] for f in ctx])) for k, ctx in enumerate(lv.contexts)]

    def mass(self, a: int, b: int) -> int:
        """The network's Laplace table's frequency of the values a..b."""
        return int(self.cdf[self.start + b + 1]) - int(self.cdf[self.start + a])

    def code_bit(self, node: int, y: int | None, ones: int, total: int) -> int:
        """Code (or, with y None, decode) one decision at `node`; returns the bit. `ones` of the `total`
        frequency that the network's table gives the values left are those of a 1."""
        st, lv, F = self.state, self.state.level, self.F
        net = STRETCH[clamp((ones << 12) // total, 1, PROB_ONE - 1)]
        xs = [STRETCH[blk[node] >> 20] for blk in self.blocks] + [net, BIAS_INPUT]
        sets = [st.mixer_weights(m, node * SELECTOR_SIZES[f] + F[f]) for m, f in enumerate(lv.mixers)]
        outs = [_dot(ws, xs) for ws in sets]
        if len(outs) > 1:
            final = st.final_weights(node)
            mixed = _dot(final, outs)
        else:
            final, mixed = None, outs[0]
        p_mix = squash(mixed)
        tables, p_apm = [], 0
        s = clamp(mixed, -ST_MAX, ST_MAX) + 2048
        lo, w = s >> 7, s & 127
        for a, f in enumerate(lv.apms):
            t = st.apm_table(a, node * SELECTOR_SIZES[f] + F[f])
            tables.append(t)
            p_apm += (t[lo] * (128 - w) + t[lo + 1] * w) >> 11
        p_apm //= len(lv.apms)
        p = clamp((p_mix + 3 * p_apm + 2) >> 2, 1, PROB_ONE - 1)

        y = self.coder.code(p, y)

        for blk in self.blocks:
            blk[node] = counter_update(blk[node], y, lv.counter_limit)
        for ws, out in zip(sets, outs):
            _train(ws, xs, ((y << 12) - squash(out)) * lv.mixer_rate)
        if final is not None:
            _train(final, outs, ((y << 12) - p_mix) * lv.final_rate)
        near = lo + (w >> 6)
        target = 65535 if y else 0
        for t in tables:
            t[near] += (target - t[near]) >> lv.apm_rate
        return y


def _code_subpixel(stage: _Stage, p: int, x: int | None) -> int:
    """Binarise x around p and code its decisions (x None: decode them); returns x. Each decision also
    gets the network's probability of a 1 from its table's frequencies of the values still possible."""
    bit, mass = stage.code_bit, stage.mass
    r = None if x is None else x - p
    if bit(NODE_ZERO, None if r is None else int(r == 0), mass(p, p), mass(0, 255)):
        return p
    if 0 < p < 255:
        below = mass(0, p - 1)
        negative = bit(NODE_SIGN, None if r is None else int(r < 0), below, below + mass(p + 1, 255))
    else:
        negative = int(p == 255)
    top = p if negative else 255 - p              # the largest |r| the range allows

    def side(a: int, b: int) -> int:              # the frequency of magnitudes a..b on this side
        return mass(p - b, p - a) if negative else mass(p + a, p + b)

    m = None if r is None else abs(r)
    e = 0
    while (2 << e) <= top:                        # unary: is |r| >= 2^(e+1)?
        if not bit(node_exponent(negative, e), None if m is None else int(m >= 2 << e),
                   side(2 << e, top), side(1 << e, top)):
            break
        e += 1
    v = 1 << e
    for b in range(e - 1, -1, -1):                # mantissa: a 1 that would pass `top` is impossible
        if v | (1 << b) > top:
            continue
        hi = min(v | ((2 << b) - 1), top)
        if bit(node_mantissa(e, b), None if m is None else (m >> b) & 1, side(v | (1 << b), hi), side(v, hi)):
            v |= 1 << b
    return p - v if negative else p + v


# ---- tiles -------------------------------------------------------------------------------------------------------

def decoding_order(h: int, w: int, channels: int, slope: int):
    """(i, j, c) of a tile's sub-pixels in the decoder's order: wavefront t = j + slope*i, channel, row."""
    for t in range(w - 1 + slope * (h - 1) + 1):
        i_lo = 0 if t - (w - 1) <= 0 else (t - (w - 1) + slope - 1) // slope
        i_hi = min(h - 1, t // slope)
        for c in range(channels):
            for i in range(i_lo, i_hi + 1):
                yield i, t - slope * i, c


def _check_slope(slope: int) -> None:
    if slope < 2:
        raise ValueError("the adaptive stage needs slope >= 2 (NE must precede a pixel in the order)")


def ensemble_outputs(member_params: list[np.ndarray]) -> np.ndarray:
    """What the stage takes from an ensemble (members with the same Laplace rows): per sub-pixel the
    rounded means of the members' mu16 and of their log-scale indices, (n, 2) int64 as one model's. The
    average of two differently trained networks' means is a better centre than either (CBSD68, level 1:
    -1.6 % against pcnn-rgb-v7 alone, docs/ADAPTIVE.md); the stage learns the rest. (The C walk computes
    the same: csrc/tiles.c.)"""
    n = len(member_params)
    total = sum(np.asarray(p, dtype=np.int64) for p in member_params)
    return (total + n // 2) // n


LAPLACE_ROW = 511                 # the Laplace rows' layout in the model's prefix sums (engine.laplace_start)


def laplace_start(mu16: int, idx: int) -> int:
    """Where the table of (mu16, idx) starts in the prefix sums: C(k) = cdf[start + k] - cdf[start]."""
    return (idx * 16 + mu16 % 16) * LAPLACE_ROW + (255 - mu16 // 16)


def _record(tile: TileData, i: int, j: int, c: int, x: int, p: int) -> None:
    k = (i * tile.w + j) * tile.C + c
    tile.value[k], tile.res[k] = x, x - p


def encode_tile(pixels: np.ndarray, params: np.ndarray, cdf: np.ndarray, slope: int, level: int = 1,
                state: State | None = None) -> bytes:
    """A tile's bytes: pixels (h, w, C) uint8 and each sub-pixel's (mu16, idx) in the decoding order
    (n, 2), as native.tile_params gives them; `cdf` the model's Laplace rows' prefix sums (int64, the
    engine's `_laplace_prefix()`). `state`: carried from earlier tiles of a chain (updated), or None
    for a fresh one."""
    h, w, C = pixels.shape
    _check_slope(slope)
    state = state or State(level, h * w * C)
    tile, coder = TileData(h, w, C), BinaryEncoder()
    for n, (i, j, c) in enumerate(decoding_order(h, w, C, slope)):
        mu16, idx = int(params[n, 0]), int(params[n, 1])
        x, p = int(pixels[i, j, c]), rounded_mean(mu16)
        stage = _Stage(state, coder, features(tile, i, j, c, mu16, idx, state.lms), cdf, laplace_start(mu16, idx))
        _code_subpixel(stage, p, x)
        _record(tile, i, j, c, x, p)
        if state.lms:
            state.lms.update(c, x - p)
    return coder.finish()


class TileDecoder:
    """Decodes a tile one sub-pixel at a time: `position` is the next sub-pixel (i, j, c) in the
    decoding order, `step(mu16, idx)` decodes it with the network's outputs for it and returns its
    value; `finish()` returns the pixels (h, w, C) or raises ValueError if the stream was not used
    exactly (corruption)."""

    def __init__(self, data: bytes, h: int, w: int, channels: int, cdf: np.ndarray, slope: int, level: int = 1,
                 state: State | None = None):
        _check_slope(slope)
        self.cdf = cdf
        self.state = state or State(level, h * w * channels)
        self.tile, self.coder = TileData(h, w, channels), BinaryDecoder(data)
        self.order = decoding_order(h, w, channels, slope)
        self.pixels = np.zeros((h, w, channels), dtype=np.uint8)
        self.position = next(self.order, None)

    def step(self, mu16: int, idx: int) -> int:
        i, j, c = self.position
        mu16, idx = int(mu16), int(idx)
        p = rounded_mean(mu16)
        F = features(self.tile, i, j, c, mu16, idx, self.state.lms)
        x = _code_subpixel(_Stage(self.state, self.coder, F, self.cdf, laplace_start(mu16, idx)), p, None)
        _record(self.tile, i, j, c, x, p)
        if self.state.lms:
            self.state.lms.update(c, x - p)
        self.pixels[i, j, c] = x
        self.position = next(self.order, None)
        return x

    def finish(self) -> np.ndarray:
        if self.position is not None or not self.coder.exact():
            raise ValueError("adaptive stream: not decoded exactly to its end (corrupt data)")
        return self.pixels


def decode_tile(data: bytes, h: int, w: int, channels: int, cdf: np.ndarray, slope: int, params_of,
                level: int = 1, state: State | None = None) -> np.ndarray:
    """A tile's pixels from its bytes; params_of(i, j, c, pixels so far) gives the network's (mu16, idx)
    for the next sub-pixel (any model, or known outputs in tests)."""
    dec = TileDecoder(data, h, w, channels, cdf, slope, level, state)
    while dec.position is not None:
        i, j, c = dec.position
        dec.step(*params_of(i, j, c, dec.pixels))
    return dec.finish()
