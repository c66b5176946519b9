"""Transitional (issue 19): now pixzip/nets/modelfile.py (bytes: pixzip/formats/pxm.py); removed in
the next commits, once its importers have moved."""
from .nets.modelfile import LoadedModel  # noqa: F401
