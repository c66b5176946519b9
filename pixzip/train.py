"""Transitional (issue 19): now pixzip/training/loop.py and config.py; removed in the next commits."""
from .training.config import TrainConfig  # noqa: F401
from .training.loop import export_checkpoint, run_training  # noqa: F401
