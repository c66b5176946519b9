"""The adaptive stage's view of a sub-pixel's neighbourhood (part of its specification, entropy/adaptive.py):
the quantised features its contexts hash, and the two predictors that fit each image as it is coded (the
residual LMS filter and the least-squares predictor). The C stage (csrc/adaptive.c, `features`,
`lms_update`, `ols_update`) computes the same integers."""

from __future__ import annotations

import numpy as np

(F_ZERO, F_IDX, F_IDX2, F_IDX8, F_FRAC, F_CH, F_BRIGHT,
 F_QRW, F_QRN, F_QRNW, F_QRNE, F_QRWW, F_QRNN, F_QR1, F_QR2, F_ACT, F_GRAD,
 F_DW, F_DN, F_DNW, F_DNE, F_DPLANE, F_DNNE, F_DAVG, F_DWNE, F_DNN, F_DWW, F_DCW, F_DCN,
 F_RW, F_RN, F_R1, F_QRWP, F_QRNP, F_QR1U, F_LMS, F_LMSU, F_DWX, F_DNX, F_DNEX, F_DNWX, F_VOTE, F_VX,
 F_OLS, F_OLSU, F_VW, F_VN, F_VNW, F_VNE, F_VP, F_VWN, F_VNWNE, F_VWW, F_VNN, F_T1, F_T2, F_T3, F_MX, F_MHIT) = range(59)
N_FEATURES = 59
# Level 14's templates (planes of two values: a page of text, line art): which neighbours are not 0, packed one bit
# each, F_T1 from the first, F_T2 the second, F_T3 the third; 0 outside the tile. A bilevel coder's contexts (JBIG's
# is the first, ten pixels), every neighbour one the decoder has at the smallest slope the stage takes, 2: row i
# before j, row i - 1 to j + 2, row i - 2 to j + 4, row i - 3 to j + 6 (docs/ADAPTIVE.md "Planes of two values").
TEMPLATES = (((0, -1), (0, -2), (0, -3), (0, -4), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2), (-2, 0)),
             ((-2, -1), (-2, 1), (-1, -3), (-2, -2), (-2, 2), (0, -5)),
             ((0, -6), (-1, -4), (-1, -5), (-2, -3), (-2, 3), (-2, 4), (-3, -1), (-3, 0), (-3, 1), (-3, 2), (-3, -2),
              (0, -7)))
# features that select mixer weight sets or APM tables: their number of values (all >= 0)
SELECTOR_SIZES = {F_ZERO: 1, F_IDX2: 37, F_IDX8: 10, F_CH: 3, F_ACT: 11, F_QR1U: 15, F_GRAD: 11, F_LMSU: 15, F_VOTE: 33,
                  F_OLSU: 15, F_MX: 32}
N_IDX = 73                        # log-scale indices 0..72 (engine: LS_MIN..LS_MAX in 1/8)
CANDIDATES = 8                    # the exact-predictor vote's candidates (exact_candidates)


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


def classical_outputs(tile: "TileData", i: int, j: int, c: int) -> tuple[int, int]:
    """(mu16, idx) for levels with `classical` (13), in place of the network's: LOCO-I's median predictor
    of W, N and W + N - NW, and a scale from the activity a = |W - NW| + |N - NW| + |N - NE|: idx 14 where a is 0,
    else 16 + 6 * bit_length(a) (about 24 + 8 ln(0.3 + a / 2): a Laplace scale near a / 2 in the engine's
    log-scale index), at most 72. Neighbours outside the tile: W reads as N and N as W (both 0 at the tile's
    first sample), NW and NE as N. The stage alone, for planes a photograph-trained network predicts worse than
    their own neighbours do (gradients, charts: docs/ADAPTIVE.md "Planes coded in few bits")."""
    def value(di, dj):
        got = tile.at(i + di, j + dj, c)
        return None if got is None else got[0]
    W, N = value(0, -1), value(-1, 0)
    if W is None and N is None:
        W = N = 0
    W, N = (N if W is None else W), (W if N is None else N)
    NW, NE = value(-1, -1), value(-1, 1)
    NW, NE = (N if NW is None else NW), (N if NE is None else NE)
    pred = clamp(W + N - NW, min(W, N), max(W, N))
    a = abs(W - NW) + abs(N - NW) + abs(N - NE)
    return 16 * pred, (min(72, 16 + 6 * a.bit_length()) if a else 14)


class TileData:
    """A tile's coded values and residuals so far (flat, (i * w + j) * C + c). In the decoding order
    every neighbour used (W, WW, NW, N, NN, NE, NNE: earlier wavefronts when slope >= 2) and every
    earlier channel of the pixel is known; outside the tile a value reads as the current prediction p
    and a residual as 0."""

    def __init__(self, h: int, w: int, channels: int, top: tuple[int, ...] | None = None):
        self.h, self.w, self.C = h, w, channels
        self.top = tuple(top) if top is not None else (255,) * channels    # each channel's largest value
        self.value = [0] * (h * w * channels)
        self.res = [0] * (h * w * channels)
        self.exact = [0] * (h * w * channels)    # which vote candidates were exact (levels with a vote)
        self.mhit = [0] * (h * w * channels)     # the match's prediction: 0 none, 1 right, 2 wrong (levels with match)

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


class LeastSquares:
    """The image's own linear predictor of the residual r = x - p (levels 7 to 10): per channel, the
    least-squares fit over the sub-pixels coded so far (recent ones weighted more) of 28 inputs, the
    neighbours' differences to p and residuals, the earlier channels' residuals and colour gradients, the
    network's fraction of mu and the LMS filter's prediction (`ols_inputs`). Where the LMS filter takes small
    steps along a gradient, this one solves for the weights outright, so it follows an image's own
    correlations within a few hundred sub-pixels (17 CBSD68 photos -0.7 % at level 8, docs/ADAPTIVE.md). Its
    prediction in 1/16 grey level is feature F_OLS (quarter levels, logarithmic buckets).

    Integers only: the statistics A = sum u u^T and b = sum u r (int64 here; C keeps A's upper triangle in
    int32, within 2^30 by the decay) decay by 1/128 every 16 sub-pixels of a channel, and every 128 the
    weights (16.16) are solved anew by Gaussian elimination without pivoting on A + I, each row's factor a
    16.16 fixed-point quotient (`_solve`); where a pivot is not positive the weights stay as they were."""

    INPUTS = 28
    DECAY_EVERY, DECAY_SHIFT, SOLVE_EVERY = 16, 7, 128
    W_LIMIT, M_LIMIT, G_LIMIT = 1 << 20, 1 << 30, 1 << 31

    def __init__(self):
        n = self.INPUTS
        self.A = [np.zeros((n, n), dtype=np.int64) for _ in range(4)]
        self.b = [np.zeros(n, dtype=np.int64) for _ in range(4)]
        self.w = [[0] * n for _ in range(4)]
        self.count = [0] * 4
        self.u, self.pred = [0] * n, 0

    def predict(self, c: int, u: list[int]) -> int:
        """The residual expected, in 1/16 grey level within +-128 levels."""
        self.u = u
        self.pred = clamp(sum(w * x for w, x in zip(self.w[c & 3], u)) >> 12, -2048, 2048)
        return self.pred

    def update(self, c: int, r: int) -> None:
        c &= 3
        u = np.array(self.u, dtype=np.int64)
        A, b = self.A[c], self.b[c]
        A += np.outer(u, u)
        b += u * r
        self.count[c] += 1
        if self.count[c] % self.DECAY_EVERY == 0:
            A -= A >> self.DECAY_SHIFT
            b -= b >> self.DECAY_SHIFT
        if self.count[c] % self.SOLVE_EVERY == 0:
            self.w[c] = self._solve(A, b, self.w[c])

    @classmethod
    def _solve(cls, A: np.ndarray, b: np.ndarray, old: list[int]) -> list[int]:
        """The weights w (16.16) with (A + I) w = b, by elimination in int64 (every product stays below
        2^62: entries are clamped to +-2^30, factors to +-2^31); `old` where a pivot is not positive."""
        n = cls.INPUTS
        M = np.concatenate([A + np.eye(n, dtype=np.int64), b[:, None]], axis=1)
        for k in range(n):
            piv = int(M[k, k])
            if piv <= 0:
                return old
            g = np.clip((M[k + 1:, k] << 16) // piv, -cls.G_LIMIT, cls.G_LIMIT)
            M[k + 1:, k + 1:] = np.clip(M[k + 1:, k + 1:] - ((g[:, None] * M[k, k + 1:]) >> 16),
                                        -cls.M_LIMIT, cls.M_LIMIT)
        w = [0] * n
        for i in range(n - 1, -1, -1):
            s = (int(M[i, n]) << 16) - sum(int(M[i, j]) * w[j] for j in range(i + 1, n))
            w[i] = clamp(s // int(M[i, i]), -cls.W_LIMIT, cls.W_LIMIT)
        return w


def ols_inputs(tile: TileData, i: int, j: int, c: int, mu16: int, lms_pred: int) -> list[int]:
    """The least-squares predictor's 28 inputs at (i, j, c): W, N, NW, NE, WW, NN, NNE, NWW, NNW, NEE minus
    p (NEE is in the same wavefront at slope 2, one row up: decoded before), the residuals of W, N, NW, NE,
    WW, NN, of the pixel's earlier channels and of the previous channel's W and N, the previous channel's
    gradients x1 - W1, x1 - N1, x1 - NW1, x1 - NE1 and the one before's (x2 - W2) + (x2 - N2), mu's
    fraction (1/16), a constant 16 (a bias), and the LMS prediction in grey levels. Outside the tile a
    value reads as p, a residual as 0 and a gradient as 0."""
    p = rounded_mean(mu16)

    def d(di, dj):                          # a neighbour's difference to p
        got = tile.at(i + di, j + dj, c)
        return 0 if got is None else got[0] - p

    def res(di, dj, cc=c):
        got = tile.at(i + di, j + dj, cc)
        return 0 if got is None else got[1]

    def grad(di, dj, cc):                   # x_cc - its neighbour (di, dj): the earlier channel's gradient
        got = tile.at(i + di, j + dj, cc)
        return 0 if got is None else tile.value[(i * tile.w + j) * tile.C + cc] - got[0]

    u = [d(0, -1), d(-1, 0), d(-1, -1), d(-1, 1), d(0, -2), d(-2, 0), d(-2, 1), d(-1, -2), d(-2, -1), d(-1, 2),
         res(0, -1), res(-1, 0), res(-1, -1), res(-1, 1), res(0, -2), res(-2, 0)]
    if c > 0:
        u += [res(0, 0, c - 1), res(0, 0, c - 2) if c > 1 else 0, res(0, -1, c - 1), res(-1, 0, c - 1),
              grad(0, -1, c - 1), grad(-1, 0, c - 1), grad(-1, -1, c - 1), grad(-1, 1, c - 1),
              grad(0, -1, c - 2) + grad(-1, 0, c - 2) if c > 1 else 0]
    else:
        u += [0] * 9
    return u + [mu16 - 16 * p, 16, lms_pred >> 4]


def exact_candidates(tile: TileData, i: int, j: int, c: int) -> list[int]:
    """The vote's candidate predictors of sub-pixel (i, j, c): W, N, NE, NW, W + N - NW, the pixel's
    previous channel x1, W + x1 - W1 and N + x1 - N1 (colour-guided); -1 where a neighbour one needs is
    outside the tile (or there is no previous channel)."""
    def v(di, dj, cc=c):
        got = tile.at(i + di, j + dj, cc)
        return -1 if got is None else got[0]
    W, N, NW, NE = v(0, -1), v(-1, 0), v(-1, -1), v(-1, 1)
    cand = [W, N, NE, NW, clamp(W + N - NW, 0, 255) if NW >= 0 else -1, -1, -1, -1]
    if c > 0:
        x1 = v(0, 0, c - 1)
        cand[5] = x1
        if W >= 0:
            cand[6] = clamp(W + x1 - v(0, -1, c - 1), 0, 255)
        if N >= 0:
            cand[7] = clamp(N + x1 - v(-1, 0, c - 1), 0, 255)
    return cand


def exact_mask(candidates: list[int], x: int) -> int:
    """Bit k set where candidate k equalled the value coded."""
    return sum(1 << k for k, v in enumerate(candidates) if v == x)


def exact_vote(tile: TileData, i: int, j: int, c: int, p: int, cand: list[int], threshold: int) -> tuple[int, int]:
    """(F_VOTE, F_VX): which candidate was exact around this sub-pixel. Each candidate's hits are the
    exact-masks of W, N, NW, NE, NN, WW and of the pixel's previous channel that have its bit; the first
    with the most hits is the vote. With at least `threshold` hits, F_VOTE = 1 + 4 k + min(hits - threshold, 3) and
    F_VX its value's difference to p within +-15 (where a predictor keeps being exact, e.g. a gradient along
    a diagonal, the residual is then known); else (0, 16)."""
    def mask(di, dj, cc=c):
        if tile.at(i + di, j + dj, cc) is None:
            return 0
        return tile.exact[((i + di) * tile.w + j + dj) * tile.C + cc]
    masks = [mask(0, -1), mask(-1, 0), mask(-1, -1), mask(-1, 1), mask(0, 0, c - 1) if c > 0 else 0,
             mask(-2, 0), mask(0, -2)]
    hits = [sum((m >> k) & 1 for m in masks) for k in range(CANDIDATES)]
    best = hits.index(max(hits))
    if hits[best] < threshold or cand[best] < 0:
        return 0, 16
    return 1 + 4 * best + min(hits[best] - threshold, 3), clamp(cand[best] - p, -15, 15)


def template_bits(tile: TileData, i: int, j: int, c: int, template) -> int:
    """The template's neighbours that are not 0, bit k for the k-th (0 outside the tile)."""
    bits = 0
    for k, (di, dj) in enumerate(template):
        got = tile.at(i + di, j + dj, c)
        if got is not None and got[0] > 0:
            bits |= 1 << k
    return bits


# The match model (level 15, session 26): the value that last followed the same neighbourhood, MATCH_NEIGHBOURS: row 0
# from 8 to the left, then rows -1..-5, each from 8 to the left to min(8, 2 x its distance) to the right (all decoded
# at slope 2). Where a glyph, a line or a pattern repeats, the neighbourhood recurs and predicts the next value after
# one occurrence, where counters need several; the neighbours' record of right and wrong predictions (F_MHIT) says
# how far to trust it (docs/ADAPTIVE.md "Planes of two values").
MATCH_NEIGHBOURS = tuple((0, -d) for d in range(1, 9)) + tuple((-r, d) for r in range(1, 6)
                                                               for d in range(-8, min(8, 2 * r) + 1))
MATCH_BITS = 20                  # the table's slots, 2^bits: value + 1, 0 for none (State.match)
MATCH_OUTSIDE = 256              # a neighbour outside the tile, in the hash
MATCH_CENTRE_IDX = 14            # level 16: the scale index where the match's value is the centre (classical_outputs' least)
_HITS_AT = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0))


def match_index(tile: TileData, i: int, j: int, c: int) -> int:
    """The table slot of (i, j, c)'s neighbourhood: its values in MATCH_NEIGHBOURS' order, hashed."""
    h = c + 1
    for di, dj in MATCH_NEIGHBOURS:
        got = tile.at(i + di, j + dj, c)
        h = (h * 0x9E3779B1 + (MATCH_OUTSIDE if got is None else got[0]) + 1) & 0xFFFFFFFF
    return ((h * 0x9E3779B1) & 0xFFFFFFFF) >> (32 - MATCH_BITS)


def match_features(tile: TileData, i: int, j: int, c: int, p: int, table: list[int], slot: int) -> tuple[int, int]:
    """(F_MX, F_MHIT): the value last seen after this neighbourhood against p (1..31 for -15..15; 0: none), and
    how the match predicted W, N, NW, NE, WW and NN (2 bits each, the first lowest: 0 none, 1 right, 2 wrong)."""
    e = table[slot]
    hits = 0
    for k, (di, dj) in enumerate(_HITS_AT):
        if tile.at(i + di, j + dj, c) is not None:
            hits |= tile.mhit[((i + di) * tile.w + j + dj) * tile.C + c] << (2 * k)
    return (clamp(e - 1 - p, -15, 15) + 16 if e else 0), hits


def match_update(tile: TileData, table: list[int], slot: int, i: int, j: int, c: int, x: int) -> None:
    """After coding x: whether the match predicted it (tile.mhit), and x as what followed the neighbourhood."""
    e = table[slot]
    tile.mhit[(i * tile.w + j) * tile.C + c] = (1 if e - 1 == x else 2) if e else 0
    table[slot] = x + 1


def features(tile: TileData, i: int, j: int, c: int, mu16: int, idx: int,
             lms: ResidualPredictor | None = None, ols: LeastSquares | None = None, template: bool = False) -> list[int]:
    """The quantised neighbourhood of sub-pixel (i, j, c): N_FEATURES small integers (with `lms` and `ols`,
    the predictors' inputs are set and their predictions taken; with `template`, F_T1..F_T3, else 0). F_VOTE and
    F_VX are 0 here: the coder sets them at levels with a vote (adaptive._code_one)."""
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
    # the neighbours' differences to p exactly where small: where a neighbour equals the pixel (a flat
    # colour, a gradient along a row or a column, a diagonal step), they tell the residual exactly
    F[F_DWX], F[F_DNX] = clamp(W - p, -15, 15), clamp(N - p, -15, 15)
    F[F_DNEX], F[F_DNWX] = clamp(NE - p, -15, 15), clamp(NW - p, -15, 15)
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
    if ols is not None:
        F[F_OLS] = qres(ols.predict(c, ols_inputs(tile, i, j, c, mu16, lms.pred if lms else 0)) >> 2)
    F[F_OLSU] = F[F_OLS] + 7
    # the neighbours' and p's values themselves (levels 11 and 12: palette indices and levels' ranks, where a
    # value names a colour and the same colours recur next to each other; two packed in one feature, 16 bits)
    F[F_VW], F[F_VN], F[F_VNW], F[F_VNE], F[F_VP] = W, N, NW, NE, p
    F[F_VWN], F[F_VNWNE], F[F_VWW], F[F_VNN] = W * 256 + N, NW * 256 + NE, WW, NN
    if template:
        F[F_T1], F[F_T2], F[F_T3] = (template_bits(tile, i, j, c, t) for t in TEMPLATES)
    return F
