"""Transitional (issue 19): the integer engine is now pixzip/nets/ and pixzip/spec/; this module only
serves the importers that move in the next commit, and is then removed."""
from .nets.ensemble import IntEnsemble  # noqa: F401
from .nets.pixelcnn import IntPixelCNN  # noqa: F401
from .nets.qconv import QConv, conv_taps  # noqa: F401
from .spec.fixed_point import LS_FRAC, LS_MIN  # noqa: F401
