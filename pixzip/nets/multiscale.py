"""The integer multi-scale model: a model of the subsampled image, then a conditional PixelCNN."""

from __future__ import annotations

import numpy as np

from ..spec.config import ModelConfig
from .base import IntModel
from .pixelcnn import IntPixelCNN


class IntMultiScale:
    """A multi-scale model: `small` codes the subsampled image (every scale-th pixel), `big` (a
    conditional IntPixelCNN) the full image given it. The codec runs the two stages one after the other;
    a plane's streams are the small image's tiles, then the full image's."""

    def __init__(self, cfg: ModelConfig, small: IntModel, big: IntPixelCNN):
        self.cfg, self.small, self.big = cfg, small, big
        self.head = {**{f"small.{k}": v for k, v in small.head.items()}, **{f"big.{k}": v for k, v in big.head.items()}}
        self.tables = {**big.tables, **small.tables}
        self.symbol_values = big.symbol_values

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
