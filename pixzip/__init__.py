"""pixzip: lossless image compression with integer-exact PixelCNN models (see README.md)."""

__version__ = "0.3.0"
