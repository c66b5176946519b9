"""Architecture name (`ModelConfig.arch`) -> integer model class: the one place that knows them all."""

from __future__ import annotations

from ..spec.config import ModelConfig
from .base import IntModel
from .multiscale import IntMultiScale
from .pixelcnn import IntPixelCNN
from .rnn import IntDiagBiLSTM, IntRowLSTM

INT_MODELS = {"pixelcnn": IntPixelCNN, "rowlstm": IntRowLSTM, "diagbilstm": IntDiagBiLSTM}


def int_model_class(arch: str):
    """The integer class of a single-network architecture (all have `from_convs`)."""
    return INT_MODELS[arch]


def from_convs(cfg: ModelConfig, convs: dict, head: dict, tables: dict) -> IntModel | IntMultiScale:
    """An integer model from its layers by name (as the model file stores them), its head constants
    and tables. A multi-scale model's two stages are stored under the prefixes small. and big."""
    if cfg.arch != "multiscale":
        return int_model_class(cfg.arch).from_convs(cfg, convs, head, tables)
    parts = []
    for prefix, part in zip(("small.", "big."), cfg.parts()):
        sub = {k[len(prefix):]: v for k, v in convs.items() if k.startswith(prefix)}
        sub_head = {k[len(prefix):]: v for k, v in head.items() if k.startswith(prefix)}
        parts.append(from_convs(part, sub, sub_head, tables))
    return IntMultiScale(cfg, *parts)
