"""Transitional (issue 19): now pixzip/backends/codec.py, which this name stands for until its importers
move (the next commits remove it)."""
import sys

from .backends import codec

sys.modules[__name__] = codec
