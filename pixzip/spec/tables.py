"""The lookup tables and frequency-table formulas, as numpy: the one reference of each.

The tables (exp, Laplace slope, LSTM gates) are built once at export and stored in the model file, so
the coding path never evaluates exp(); the Laplace rows are derived from the stored tables by integer
arithmetic only. The integer engine builds its tables from these functions; the native coder's are
checked against them (tests/test_native.py)."""

from __future__ import annotations

import numpy as np

from .fixed_point import GATE_ONE, GATE_RANGE, INVB_SHIFT, LS_FRAC, LS_MAX, LS_MIN, PROB_BITS, ROW


def exp_table() -> np.ndarray:
    """2^16 * exp(-k/16) rounded, floor 1, until it reaches 1 (int32)."""
    vals = []
    k = 0
    while True:
        v = max(1, int(round((1 << PROB_BITS) * np.exp(-k / 16))))
        vals.append(v)
        if v == 1:
            return np.array(vals, dtype=np.int32)
        k += 1


def invb_table() -> np.ndarray:
    """2^14 / exp(ls) for every log-scale step ls = LS_MIN + i / LS_FRAC (int32)."""
    n = int((LS_MAX - LS_MIN) * LS_FRAC) + 1
    return np.array([int(round((1 << INVB_SHIFT) * np.exp(-(LS_MIN + i / LS_FRAC)))) for i in range(n)],
                    dtype=np.int32)


def gate_tables() -> dict[str, np.ndarray]:
    """sigmoid and tanh of z = k/32 for k in [-256, 256), in Q15 (int32)."""
    z = (np.arange(-GATE_RANGE, GATE_RANGE) / 32.0)
    return {"sigmoid": np.round(GATE_ONE / (1 + np.exp(-z))).astype(np.int32),
            "tanh": np.round(GATE_ONE * np.tanh(z)).astype(np.int32)}


def laplace_excess(invb: np.ndarray, exp_len: int) -> np.ndarray:
    """Index into the exp table of every Laplace frequency, as rows (idx * 16 + r, x - q + 255).

    With mu16 = 16q + r, the frequency of value x depends only on (log-scale index, r, x - q), so row
    (idx, r) holds EXP[min(len - 1, (|16(x - q) - r| * INVB[idx] >> 14) - (n_r * INVB[idx] >> 14))]
    for x - q in -255..255, n_r = min(r, 16 - r) being the distance from mu16 to the likeliest value.
    (|d| <= 4080 and INVB < 2^19: no overflow in int64.)"""
    k = np.arange(-255, 256, dtype=np.int64)[None, None, :]
    r = np.arange(16, dtype=np.int64)[None, :, None]
    inv = np.asarray(invb, dtype=np.int64)[:, None, None]
    near = np.minimum(r, 16 - r)
    excess = (((np.abs(16 * k - r) * inv) >> INVB_SHIFT) - ((near * inv) >> INVB_SHIFT))
    return np.clip(excess, 0, exp_len - 1).reshape(-1, ROW)


def laplace_rows(exp: np.ndarray, invb: np.ndarray) -> np.ndarray:
    """The Laplace head's frequency tables, every (log-scale index, mu16 mod 16) row: exp[excess]."""
    exp = np.asarray(exp)
    return exp[laplace_excess(invb, len(exp))]


def laplace_start(mu16, idx):
    """Where the Laplace table of (mu16, log-scale index) starts in the flattened rows of
    `laplace_rows`: row (idx, mu16 mod 16), at 255 - floor(mu16 / 16). int64 numpy arrays or tensors
    alike."""
    return (idx * 16 + mu16 % 16) * ROW + (255 - mu16 // 16)


def softmax_frequencies(exp: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """A softmax head's integer tables: exp[min(len - 1, max logit - logit)] per symbol, (n, levels)."""
    logits = np.asarray(logits, dtype=np.int64)
    excess = np.minimum(logits.max(axis=1, keepdims=True) - logits, len(exp) - 1)
    return np.asarray(exp)[excess]


def laplace_prefix(exp: np.ndarray, invb: np.ndarray) -> np.ndarray:
    """Prefix sums of the flattened Laplace rows (int64), with a leading 0: a table starting at `start`
    (`laplace_start`) has C(k) = prefix[start + k] - prefix[start]; strictly increasing (every entry
    is >= 1). What the rANS coder and the native coder read instead of the tables themselves."""
    rows = laplace_rows(exp, invb).reshape(-1).astype(np.int64)
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(rows)])


def min_bits_per_symbol(exp: np.ndarray, levels: int) -> float:
    """No symbol costs less: the likeliest value gets at most exp[0] against at least exp[-1] for each
    of the other levels (for reporting and sanity bounds, not for coding)."""
    top, floor = int(exp[0]), int(exp[-1])
    return float(np.log2((top + (levels - 1) * floor) / top))
