"""An ensemble of integer PixelCNNs: the equal-weight mixture of their frequency tables."""

from __future__ import annotations

import numpy as np
import torch

from ..entropy.rans import PRECISION
from .pixelcnn import IntPixelCNN


class IntEnsemble:
    """An ensemble: the equal-weight mixture of its members' distributions (PixelCNNs with the same
    channels, levels and decode slope). Each member's table is scaled to the coder's total 2^24,
    q_m(k) = floor(C_m(k) * 2^24 / S_m), and the mixture is C(k) = floor(sum_m q_m(k) / n): strictly
    increasing, total 2^24. Only the native CPU coder (pixzip/csrc/) runs it: the members' walks in
    lockstep, one mixture per sub-pixel (`codec` refuses it elsewhere with a one-line error);
    `mixture_interval` is the reference of its integers."""

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
        self._cache: dict = {}                   # its record (nets.record), made once

    def __getstate__(self):
        return {**self.__dict__, "_cache": {}}

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

    def mixture_interval(self, member_params: list[np.ndarray], symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C(s), C(s + 1)) of the mixture for each sub-pixel's symbol s, given each member's head
        outputs there (n, D): the integers the native coder codes with (total 2^PRECISION). The
        reference the C coder is tested against (tests/test_native.py)."""
        symbols = np.asarray(symbols, dtype=np.int64)
        lows, highs = [], []
        for member, params in zip(self.members, member_params):
            tables = member.cdf_tables(params)
            total = np.asarray(tables.total, dtype=np.int64)
            lows.append((np.asarray(tables.at(symbols), dtype=np.int64) << PRECISION) // total)
            highs.append((np.asarray(tables.at(symbols + 1), dtype=np.int64) << PRECISION) // total)
        n = len(self.members)
        return sum(lows) // n, sum(highs) // n
