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
coded. About 3.9 decisions per sub-pixel on a CBSD68 photograph. At a `bitwise` level (planes of palette
indices, whose neighbouring values name colours rather than nearby intensities) the decisions are instead
x's own bits, most significant first (`_code_bits`), the low nibble's in blocks of their own per high nibble.

Probability of a decision (`_Stage.code_bit`), every step integer:
- contexts: each a hash of a few quantised *features* of the sub-pixel's neighbourhood (`features`),
  selecting a block of 32 slots in its own table; the decision's node picks the slot. A slot is an
  adaptive bit counter (22-bit probability, 10-bit count, rate 1/(n + 1.5) down to 1/(limit + 1.5));
  the block's first slot holds a check of the hash, and a block found holding another context's check
  is reset (a context never seen contributes probability 1/2, i.e. nothing, to the mixer);
- the network's own probability of the decision: its Laplace table's frequency (the model's integer
  prefix sums) of the values still possible that give a 1, over that of all of them; at levels 9 and 10
  also the same table's moved to p + the least-squares prediction (`table_starts`);
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

import numpy as np

from .adaptive_features import (  # noqa: F401  (the specification's names, one place to read them from)
    F_ACT, F_BRIGHT, F_CH, F_DAVG, F_DCN, F_DCW, F_DN, F_DNE, F_DNEX, F_DNN, F_DNNE, F_DNW, F_DNWX, F_DNX, F_DPLANE,
    F_DW, F_DWNE, F_DWW, F_DWX, F_FRAC, F_GRAD, F_IDX, F_IDX2, F_IDX8, F_LMS, F_LMSU, F_OLS, F_OLSU, F_QR1, F_QR1U, F_QR2,
    F_QRN, F_QRNE, F_QRNN, F_QRNP, F_QRNW, F_QRW, F_QRWP, F_QRWW, F_R1, F_RN, F_RW, F_VN, F_VNE, F_VNN, F_VNW, F_VNWNE,
    F_MHIT, F_MX, F_VOTE, F_VP, F_VW, F_VWN, F_VWW, F_VX, F_ZERO, N_FEATURES,
    MATCH_BITS, MATCH_CENTRE_IDX, N_IDX, SELECTOR_SIZES, LeastSquares, ResidualPredictor, TileData, clamp, classical_outputs,
    exact_candidates, exact_mask, exact_vote, features, match_features, match_index, match_update, qlog, qres, rounded_mean)
from .adaptive_levels import (CHAIN_TILES, LEVELS, Level, chains, level_for, prior_key,  # noqa: F401
                              prior_of, table_bits)
from .binary_coder import M32, BinaryDecoder, BinaryEncoder  # noqa: F401

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


def node_bit(b: int, high: int) -> int:
    """At a bitwise level, bit b (7..0) of x after the bits above it (`high`: x >> (b + 1)): its place in
    its nibble's tree, 1..15 for the high nibble's bits and 16..30 for the low nibble's."""
    k = 3 - (b & 3)                               # the nibble's bits already coded
    return (1 << k) + (high & ((1 << k) - 1)) + (15 if b < 4 else 0)


def nibble_hash(h: int, high: int) -> int:
    """A context's hash for the low nibble's block: its hash with the high nibble, mixed again."""
    h = (h ^ (((high + 1) * 0x2545F491) & M32)) & M32
    h ^= h >> 16
    h = (h * 0x7FEB352D) & M32
    h ^= h >> 15
    h = (h * 0x846CA68B) & M32
    return h ^ (h >> 16)


# ---- features of a sub-pixel's neighbourhood: adaptive_features.py; the coder: binary_coder.py; the effort
# levels and their priors: adaptive_levels.py ----------------------------------------------------------------------

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
        self.ols = LeastSquares() if self.level.ols else None
        self.match = [0] * (1 << MATCH_BITS) if self.level.match else None     # value + 1 after a neighbourhood
        self.prior = _split_prior(self.level)

    def block(self, k: int, h: int) -> list[int]:
        """Context k's block for hash h: found, or (re)initialised with h's check."""
        index, check = h >> (32 - self.bits), (h & 0xFFFF) | 0x10000
        blk = self.tables[k].get(index)
        if blk is None or blk[CHECK_SLOT] != check:
            blk = [check] + [COUNTER_INIT] * (NODES - 1)
            self.tables[k][index] = blk
        return blk

    # Where a weight set, final weight set or APM table is first used, it starts from the level's prior
    # (a learned state, `prior_of`) or, without one, from these values: the network's input near weight
    # 1 and the contexts' small, so a fresh state codes about as the network's Laplace alone, and learns
    # from there (small images, a tile's first rows).
    def _initial(self, part: int, index: int, key: int) -> list[int]:
        prior = self.prior
        if prior is not None:
            return [int(v) for v in prior[part][index][key]]
        lv = self.level
        if part == 0:
            net = lv.net_init >> 1 if lv.shifted else lv.net_init          # split between the two tables
            return [lv.mixer_init] * len(lv.contexts) + [net, 0] + [net] * lv.shifted
        if part == 1:
            return [65536 // len(lv.mixers)] * len(lv.mixers)
        return [squash((k - 16) * 128) * 16 for k in range(33)]

    def mixer_weights(self, m: int, key: int) -> list[int]:
        ws = self.weights[m].get(key)
        if ws is None:
            ws = self.weights[m][key] = self._initial(0, m, key)
        return ws

    def final_weights(self, node: int) -> list[int]:
        ws = self.final.get(node)
        if ws is None:
            ws = self.final[node] = self._initial(1, 0, node)
        return ws

    def apm_table(self, a: int, key: int) -> list[int]:
        t = self.apm[a].get(key)
        if t is None:
            t = self.apm[a][key] = self._initial(2, a, key)
        return t

    def learned(self) -> np.ndarray:
        """The learned small state as int32s, in the order priors are stored (`learned_layout`; the C
        stage's pz_adaptive_learned)."""
        tables = (self.weights, [self.final], self.apm)
        out = []
        for part, index, sets, _ in learned_layout(self.level):
            for key in range(sets):
                out += tables[part][index].get(key) or self._initial(part, index, key)
        return np.array(out, dtype=np.int32)


def learned_layout(level: Level) -> list[tuple[int, int, int, int]]:
    """The learned small state's order, (part, index, sets, width) in turn: each mixer's weight sets
    [node][selector value][input] (part 0), the final mixer's [node][mixer] (part 1), each APM's
    [node][selector value][33] (part 2). Priors are stored in it; the C stage's `learned` walks the same."""
    inputs = len(level.contexts) + 2 + level.shifted
    return ([(0, m, NODES * SELECTOR_SIZES[f], inputs) for m, f in enumerate(level.mixers)]
            + [(1, 0, NODES, len(level.mixers))]
            + [(2, a, NODES * SELECTOR_SIZES[f], 33) for a, f in enumerate(level.apms)])


def _split_prior(level: Level):
    """The prior cut into (mixers' weight sets, [final weight sets], APMs' tables), or None."""
    prior = prior_of(level)
    if prior is None:
        return None
    parts, at = ([], [], []), 0
    for part, _, sets, width in learned_layout(level):
        block = prior[at:at + sets * width]
        if block.size != sets * width:
            raise ValueError("adaptive stage: a prior shorter than its level")
        parts[part].append(block.reshape(sets, width))
        at += sets * width
    if at != prior.size:
        raise ValueError("adaptive stage: a prior longer than its level")
    return parts


BIAS_INPUT = 256
W_LIMIT = 1 << 19                 # mixer weights stay within +-8.0


def _dot(ws, xs) -> int:
    return clamp(sum(w * x for w, x in zip(ws, xs)) >> 16, -ST_MAX, ST_MAX)


def _train(ws, xs, err: int) -> None:
    for k, x in enumerate(xs):
        ws[k] = clamp(ws[k] + ((x * err + 0x8000) >> 16), -W_LIMIT, W_LIMIT)


class _Stage:
    """One sub-pixel's coding: its context blocks, then its decisions."""

    def __init__(self, state: State, coder, F: list[int], cdf: np.ndarray, starts: list[int]):
        lv = state.level
        self.state, self.coder, self.F = state, coder, F
        self.cdf, self.starts = cdf, np.array(starts, dtype=np.int64)
        self.hashes = [ctx_hash(k, [F[f] for f in ctx]) for k, ctx in enumerate(lv.contexts)]
        self.blocks = [state.block(k, h) for k, h in enumerate(self.hashes)]

    def low_nibble(self, high: int) -> None:
        """A bitwise level's blocks for the low nibble's decisions, x's high nibble being `high`."""
        self.blocks = [self.state.block(k, nibble_hash(h, high)) for k, h in enumerate(self.hashes)]

    def mass(self, a: int, b: int) -> np.ndarray:
        """Each table's frequency of the values a..b: the network's Laplace table (and the shifted one)."""
        return self.cdf[self.starts + b + 1] - self.cdf[self.starts + a]

    def code_bit(self, node: int, y: int | None, ones: np.ndarray, total: np.ndarray) -> int:
        """Code (or, with y None, decode) one decision at `node`; returns the bit. `ones[t]` of the `total[t]`
        frequency that table t gives the values left are those of a 1."""
        st, lv, F = self.state, self.state.level, self.F
        net = [STRETCH[clamp(int(o << 12) // int(n), 1, PROB_ONE - 1)] for o, n in zip(ones, total)]
        xs = [STRETCH[blk[node] >> 20] for blk in self.blocks] + [net[0], BIAS_INPUT] + net[1:]
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


def _code_subpixel(stage: _Stage, p: int, x: int | None, hi: int = 255) -> int:
    """Binarise x in 0..hi around p and code its decisions (x None: decode them); returns x. Each decision
    also gets the network's probability of a 1 from its tables' frequencies of the values still possible."""
    bit, mass = stage.code_bit, stage.mass
    if hi == 0:                                   # one value: nothing to code
        return 0
    r = None if x is None else x - p
    if bit(NODE_ZERO, None if r is None else int(r == 0), mass(p, p), mass(0, hi)):
        return p
    if 0 < p < hi:
        below = mass(0, p - 1)
        negative = bit(NODE_SIGN, None if r is None else int(r < 0), below, below + mass(p + 1, hi))
    else:
        negative = int(p == hi)
    top = p if negative else hi - p               # the largest |r| the range allows

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


def _code_bits(stage: _Stage, x: int | None, hi: int = 255) -> int:
    """A bitwise level's binarisation: x in 0..hi as its eight bits, most significant first (x None: decode
    them); returns x. A 1 that would pass hi is not coded. The network's probability of each bit is its
    tables' frequency of the values left with that bit 1, over that of all values left."""
    if hi == 0:                                   # one value: nothing to code
        return 0
    mass = stage.mass
    v = 0
    for b in range(7, -1, -1):
        if b == 3:
            stage.low_nibble(v >> 4)
        half = 1 << b
        if v + half > hi:
            continue
        top = min(v + 2 * half - 1, hi)
        if stage.code_bit(node_bit(b, v >> (b + 1)), None if x is None else (x >> b) & 1,
                          mass(v + half, top), mass(v, top)):
            v += half
    return v


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
    the same: csrc/adaptive_tiles.c.)"""
    n = len(member_params)
    total = sum(np.asarray(p, dtype=np.int64) for p in member_params)
    return (total + n // 2) // n


LAPLACE_ROW = 511                 # the Laplace rows' layout in the model's prefix sums (engine.laplace_start)


def laplace_start(mu16: int, idx: int) -> int:
    """Where the table of (mu16, idx) starts in the prefix sums: C(k) = cdf[start + k] - cdf[start]."""
    return (idx * 16 + mu16 % 16) * LAPLACE_ROW + (255 - mu16 // 16)


def table_starts(state: State, mu16: int, idx: int) -> list[int]:
    """The network's table, and at levels with `shifted` the same scale's table at p + the least-squares
    prediction (in 1/16 level, within 0..255): the network's shape where the image's own fit puts the mean."""
    starts = [laplace_start(mu16, idx)]
    if state.level.shifted:
        starts.append(laplace_start(clamp(16 * rounded_mean(mu16) + state.ols.pred, 0, 4080), idx))
    return starts


def _record(tile: TileData, i: int, j: int, c: int, x: int, p: int, candidates: list[int] | None) -> None:
    k = (i * tile.w + j) * tile.C + c
    tile.value[k], tile.res[k] = x, x - p
    if candidates is not None:
        tile.exact[k] = exact_mask(candidates, x)


def _code_one(state: State, coder, tile: TileData, cdf: np.ndarray, i: int, j: int, c: int, mu16: int, idx: int,
              x: int | None) -> int:
    """One sub-pixel in the decoding order (x None: decode it), the same for the encoder and the decoder:
    its features (and, at levels with a vote, the vote), its decisions, then what the tile and the state
    learn from it. Returns its value. (C: code_one.) The mean is first held within the channel's range
    (0..255, or a value-space plane's ranks: tile.top)."""
    if state.level.classical:
        mu16, idx = classical_outputs(tile, i, j, c)
    if state.match is not None:
        slot = match_index(tile, i, j, c)
        if state.level.match_centre and state.match[slot]:      # level 16: the value the match predicts
            mu16, idx = 16 * (state.match[slot] - 1), MATCH_CENTRE_IDX
    hi = tile.top[c]
    mu16 = min(mu16, 16 * hi)
    p = rounded_mean(mu16)
    F = features(tile, i, j, c, mu16, idx, state.lms, state.ols, state.level.template)
    candidates = None
    if state.level.vote:
        candidates = exact_candidates(tile, i, j, c)
        F[F_VOTE], F[F_VX] = exact_vote(tile, i, j, c, p, candidates, state.level.vote)
    if state.match is not None:
        F[F_MX], F[F_MHIT] = match_features(tile, i, j, c, p, state.match, slot)
    stage = _Stage(state, coder, F, cdf, table_starts(state, mu16, idx))
    x = _code_bits(stage, x, hi) if state.level.bitwise else _code_subpixel(stage, p, x, hi)
    _record(tile, i, j, c, x, p, candidates)
    if state.match is not None:
        match_update(tile, state.match, slot, i, j, c, x)
    if state.lms:
        state.lms.update(c, x - p)
    if state.ols:
        state.ols.update(c, x - p)
    return x


def encode_tile(pixels: np.ndarray, params: np.ndarray, cdf: np.ndarray, slope: int, level: int = 1,
                state: State | None = None, top: tuple[int, ...] | None = None) -> bytes:
    """A tile's bytes: pixels (h, w, C) uint8 and each sub-pixel's (mu16, idx) in the decoding order
    (n, 2), as native.tile_params gives them; `cdf` the model's Laplace rows' prefix sums (int64, the
    engine's `_laplace_prefix()`). `state`: carried from earlier tiles of a chain (updated), or None
    for a fresh one. `top`: each channel's largest value (default 255; a value-space plane's last ranks)."""
    h, w, C = pixels.shape
    _check_slope(slope)
    state = state or State(level, h * w * C)
    tile, coder = TileData(h, w, C, top), BinaryEncoder()
    for n, (i, j, c) in enumerate(decoding_order(h, w, C, slope)):
        _code_one(state, coder, tile, cdf, i, j, c, int(params[n, 0]), int(params[n, 1]), int(pixels[i, j, c]))
    return coder.finish()


class TileDecoder:
    """Decodes a tile one sub-pixel at a time: `position` is the next sub-pixel (i, j, c) in the
    decoding order, `step(mu16, idx)` decodes it with the network's outputs for it and returns its
    value; `finish()` returns the pixels (h, w, C) or raises ValueError if the stream was not used
    exactly (corruption)."""

    def __init__(self, data: bytes, h: int, w: int, channels: int, cdf: np.ndarray, slope: int, level: int = 1,
                 state: State | None = None, top: tuple[int, ...] | None = None):
        _check_slope(slope)
        self.cdf = cdf
        self.state = state or State(level, h * w * channels)
        self.tile, self.coder = TileData(h, w, channels, top), BinaryDecoder(data)
        self.order = decoding_order(h, w, channels, slope)
        self.pixels = np.zeros((h, w, channels), dtype=np.uint8)
        self.position = next(self.order, None)

    def step(self, mu16: int, idx: int) -> int:
        i, j, c = self.position
        x = _code_one(self.state, self.coder, self.tile, self.cdf, i, j, c, int(mu16), int(idx), None)
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
