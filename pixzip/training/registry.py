"""Architecture name (`ModelConfig.arch`) -> float model: the one place that knows them all."""

from __future__ import annotations

import torch.nn as nn

from ..spec.config import ModelConfig
from .multiscale import MultiScale
from .pixelcnn import PixelCNN
from .rnn import PixelRNN


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised float model for `cfg` (a multi-scale model: both its stages)."""
    if cfg.arch == "pixelcnn":
        return PixelCNN(cfg)
    if cfg.arch == "multiscale":
        return MultiScale(cfg, build_model(cfg.parts()[0]))
    return PixelRNN(cfg)
