"""A levels plane coded in value space (entropy stage 4, docs/ADAPTIVE.md "Levels in value space").

The `levels` transform codes each channel of a plane as the rank of its value among the values it uses
(RGB565: R 0..31, G 0..63, B 0..31; 6-bit grey: 0..63). Fed those ranks, the network sees an image it
never saw in training: G at twice R's scale, every edge a fraction of its height. In value space the
network reads the plane's own values (the image as it looks), and its prediction is carried into rank
space, where the adaptive stage codes the ranks:

- the mean: mu16 (1/16 of a grey level) between used values t[k] <= mu16 / 16 < t[k + 1] becomes
  16 k + round(16 (mu16 - 16 t[k]) / (16 d)), d = t[k + 1] - t[k]; below t[0] rank 0, from the last value up
  the last rank;
- the scale: one grey level of rank space is d levels of value space, so the log-scale index falls by
  round(LS_FRAC ln d) (the gap the mean falls in; the first gap below t[0], the last one above), at least 0.

Both are tables over the 4 096 values of mu16 (ValueMap), computed once per plane with integers only (the
shift's table is written out below as integers). The decoder builds the same tables from the transform record's
used values: nothing more is stored. The compiled stage receives them packed (ValueMap.packed). A palette's index
plane of n < 256 entries is coded the same way with the identity tables (values 0..n-1): it gains the range only."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

MU_VALUES = 4096                # mu16 is at most 4080; a table over 4 096 entries needs no bound check
PACKED = 2 * MU_VALUES + 256    # one channel packed: mean map, index shift, rank -> value


# round(LS_FRAC ln d) for a gap of d = 1..255 levels (entry 0 unused): integers in the source, so no decoder
# evaluates a logarithm (tests/test_value_map.py checks them against it, and that every LS_FRAC ln d is at least
# 0.0007 from a half, so the table is the rounding's on any machine)
SHIFT_OF_GAP = (
    0, 0, 6, 9, 11, 13, 14, 16, 17, 18, 18, 19, 20, 21, 21, 22, 22, 23, 23, 24, 24, 24, 25, 25,
    25, 26, 26, 26, 27, 27, 27, 27, 28, 28, 28, 28, 29, 29, 29, 29, 30, 30, 30, 30, 30, 30, 31, 31,
    31, 31, 31, 31, 32, 32, 32, 32, 32, 32, 32, 33, 33, 33, 33, 33, 33, 33, 34, 34, 34, 34, 34, 34,
    34, 34, 34, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36,
    37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38,
    38, 38, 38, 38, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41,
    41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42,
    42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43,
    43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 43, 44, 44, 44, 44, 44, 44, 44, 44, 44, 44,
    44, 44, 44, 44, 44, 44, 44, 44, 44, 44, 44, 44, 44, 44, 44, 44,
)


def channel_tables(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For one channel's used values (sorted, distinct, 1..256 of them): the rank-space mean and the
    log-scale shift for every mu16 in 0..4095 (int32 each)."""
    t = np.asarray(values, dtype=np.int64)
    mu = np.arange(MU_VALUES, dtype=np.int64)
    if len(t) == 1:
        return np.zeros(MU_VALUES, np.int32), np.zeros(MU_VALUES, np.int32)
    # gap k: t[k] <= mu16 / 16 < t[k + 1], clamped to the first and the last gap
    k = np.clip(np.searchsorted(16 * t, mu, side="right") - 1, 0, len(t) - 2)
    d = t[k + 1] - t[k]
    inside = np.clip(mu - 16 * t[k], 0, 16 * d)            # below t[0]: rank 0; from the last value: the last rank
    rank16 = 16 * k + (2 * inside + d) // (2 * d)           # round(inside / d), halves up
    shift = np.asarray(SHIFT_OF_GAP, dtype=np.int64)[d]
    return rank16.astype(np.int32), shift.astype(np.int32)


@dataclass(frozen=True)
class ValueMap:
    """A plane's channels' used values (rank -> value) and their mean and scale tables."""
    values: tuple[np.ndarray, ...]
    mu: np.ndarray                  # (channels, 4096) int32: mu16 in value space -> mu16 in rank space
    shift: np.ndarray               # (channels, 4096) int32: log-scale steps taken from the index there

    @classmethod
    def of(cls, tables: list[np.ndarray]) -> "ValueMap":
        maps = [channel_tables(t) for t in tables]
        return cls(tuple(np.asarray(t, dtype=np.uint8) for t in tables),
                   np.stack([m for m, _ in maps]), np.stack([s for _, s in maps]))

    @property
    def channels(self) -> int:
        return len(self.values)

    @property
    def tops(self) -> tuple[int, ...]:
        """Each channel's last rank: the adaptive stage codes values 0..top (adaptive.TileData.top)."""
        return tuple(len(v) - 1 for v in self.values)

    def outputs(self, mu16: int, idx: int, c: int) -> tuple[int, int]:
        """One sub-pixel's network outputs in value space -> the stage's in rank space."""
        return int(self.mu[c, mu16]), max(0, idx - int(self.shift[c, mu16]))

    def all_outputs(self, params: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """`outputs` for every sub-pixel: params (n, 2) of (mu16, idx), channel (n,) each one's channel."""
        mu16, idx = params[:, 0].astype(np.int64), params[:, 1].astype(np.int64)
        out = np.empty((len(params), 2), dtype=np.int64)
        out[:, 0] = self.mu[channel, mu16]
        out[:, 1] = np.maximum(0, idx - self.shift[channel, mu16])
        return out

    def to_values(self, ranks: np.ndarray) -> np.ndarray:
        """A tile's ranks (h, w, channels) -> its values (every rank below its channel's count)."""
        return np.stack([v[ranks[..., c]] for c, v in enumerate(self.values)], axis=-1)

    def to_ranks(self, values: np.ndarray) -> np.ndarray:
        """Inverse of to_values (every value one its channel uses)."""
        out = np.empty_like(values)
        for c, v in enumerate(self.values):
            rank = np.zeros(256, np.uint8)
            rank[v] = np.arange(len(v), dtype=np.uint8)
            out[..., c] = rank[values[..., c]]
        return out

    @cached_property
    def packed(self) -> np.ndarray:
        """The compiled stage's layout (csrc tiles.c, VMAP_*): per channel the mean map, the shift map
        and the 256 values (-1 past the channel's count: a stream decoding such a rank is refused), int32;
        packed once per map (every tile of the plane reads it, in any thread: it is never written)."""
        out = np.full((self.channels, PACKED), -1, dtype=np.int32)
        out[:, :MU_VALUES] = self.mu
        out[:, MU_VALUES:2 * MU_VALUES] = self.shift
        for c, v in enumerate(self.values):
            out[c, 2 * MU_VALUES:2 * MU_VALUES + len(v)] = v
        return np.ascontiguousarray(out.reshape(-1))
