"""Any float model -> its integer model: the dispatch over architectures."""

from __future__ import annotations

from ..nets.base import IntModel
from ..nets.multiscale import IntMultiScale
from .export_pixelcnn import export_pixelcnn
from .export_rnn import export_pixelrnn
from .multiscale import MultiScale
from .pixelcnn import PixelCNN
from .rnn import PixelRNN


def export(model) -> IntModel | IntMultiScale:
    """A trained float model (`training.registry.build_model`) -> the integer model that codes."""
    if isinstance(model, PixelCNN):
        return export_pixelcnn(model)
    if isinstance(model, MultiScale):
        return IntMultiScale(model.cfg, export(model.small), export_pixelcnn(model.big))
    if isinstance(model, PixelRNN):
        return export_pixelrnn(model)
    raise TypeError(f"no export for {type(model).__name__}")
