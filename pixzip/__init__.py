"""pixzip: lossless image compression with integer-exact PixelCNN models (see README.md).

    import pixzip
    data = pixzip.encode(image)        # a numpy array, a Pillow image or a path -> .pxz bytes
    pixels = pixzip.decode(data)       # -> numpy array
    Image.open("photo.pxz")            # Pillow reads and writes .pxz once pixzip is imported

`import pixzip` stays cheap: the API (pixzip.simple: numpy, the models, the coder) is imported on first
use; only the Pillow plugin's registration (pixzip.pillow, a few ms) runs here.
"""

__version__ = "0.3.0"

# The public API, imported from pixzip.simple when first used (PEP 562)
_API = ("encode", "decode", "decode_full", "decode_image", "compress_file", "decompress_file", "Decoded")
__all__ = [*_API, "PixzipError", "__version__"]

from .errors import PixzipError  # noqa: E402
from . import pillow as _pillow  # noqa: E402,F401  (registers the .pxz format with Pillow)


def __getattr__(name: str):
    if name in _API:
        from . import simple
        return getattr(simple, name)
    raise AttributeError(f"module 'pixzip' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
