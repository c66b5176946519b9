"""Transitional (issue 19): ModelConfig is now pixzip/spec/config.py; removed in the next commits."""
from .spec.config import ModelConfig  # noqa: F401
