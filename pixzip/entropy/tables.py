"""Cumulative frequency tables in the form the rANS coder reads: many tables at once, as slices of one
prefix-sum array (the Laplace head: no table is materialised) or given in full (the softmax head)."""

from __future__ import annotations

import numpy as np


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
        if isinstance(self.prefix, np.ndarray):
            search = np.searchsorted
        else:                    # int64 tensors: torch is already imported by whoever made them
            import torch
            search = torch.searchsorted
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
        if isinstance(self.cum, np.ndarray):
            return np.take_along_axis(self.cum, k[:, None], 1)[:, 0]
        return self.cum.gather(1, k[:, None])[:, 0]

    def locate(self, bound: np.ndarray):
        k = (self.cum < bound[:, None]).sum(1) - 1
        return k, self.at(k), self.at(k + 1)


CumulativeTables = PrefixTables | DenseTables
