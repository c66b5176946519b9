"""Float multi-scale model: the small image's model and the conditional PixelCNN, trained together."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..spec.config import ModelConfig
from .base import nll_bits, subsample
from .pixelcnn import PixelCNN


class MultiScale(nn.Module):
    """Two stages trained together: the small image's model and the conditional PixelCNN. The loss
    is the code length of both per sub-pixel of the full image, as the file carries both."""

    def __init__(self, cfg: ModelConfig, small: nn.Module):
        """`small`: the small image's model, built for cfg.parts()[0] (`training.registry`)."""
        super().__init__()
        self.cfg = cfg
        self.small = small
        self.big = PixelCNN(cfg.parts()[1])

    def set_quantize(self, on: bool):
        self.small.set_quantize(on)
        self.big.set_quantize(on)

    def bits(self, img: torch.Tensor) -> torch.Tensor:
        s = subsample(img, self.cfg.scale)
        total = nll_bits(self.small(s), s, self.cfg.head, self.cfg.levels).sum()
        total = total + nll_bits(self.big(img, s), img, self.cfg.head, self.cfg.levels).sum()
        return total / img.numel()
