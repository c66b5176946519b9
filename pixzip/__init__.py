"""pixzip: lossless image compression with integer-exact PixelCNN models (see README.md).

    import pixzip
    data = pixzip.encode(image)        # a numpy array, a Pillow image or a path -> .pxz bytes
    pixels = pixzip.decode(data)       # -> numpy array
    Image.open("photo.pxz")            # Pillow reads and writes .pxz once pixzip is imported

`import pixzip` stays cheap: the API (pixzip.simple: numpy, the models, the coder) is imported on first
use, and the Pillow plugin (pixzip.pillow) registers when PIL.Image is imported (at once if it already
is): importing Pillow costs ~20 ms that `pixzip decompress` never needs.
"""

__version__ = "0.3.0"

# The public API, imported from pixzip.simple when first used (PEP 562)
_API = ("encode", "decode", "decode_full", "decode_image", "compress_file", "decompress_file", "Decoded")
__all__ = [*_API, "PixzipError", "__version__"]

import sys  # noqa: E402

from .errors import PixzipError  # noqa: E402


class _RegisterWithPillow:
    """A meta path finder that lets the real one find PIL.Image, then leaves sys.meta_path. Once that
    module has run, its preinit() and init() (which Image.open, save and registered_extensions call
    before looking a format up, to import Pillow's own plugins) also register ours, the first time:
    not earlier, as PIL.Image may be imported halfway through PIL.ImageFile, which the plugin needs."""

    def find_spec(self, name, path=None, target=None):
        if name != "PIL.Image":
            return None
        import importlib.util
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def run_then_hook(module):
                run(module)
                _register_on_first_use(module)
            spec.loader.exec_module = run_then_hook
        return spec


def _register_on_first_use(image_module) -> None:
    originals = {name: getattr(image_module, name) for name in ("preinit", "init")}

    def hooked(name):
        def call(*args, **kwargs):
            for n, f in originals.items():          # restore first: registering calls into PIL.Image
                setattr(image_module, n, f)
            result = originals[name](*args, **kwargs)
            from . import pillow  # noqa: F401
            return result
        return call
    for name in originals:
        setattr(image_module, name, hooked(name))


if "PIL.Image" in sys.modules:
    from . import pillow as _pillow  # noqa: F401
else:
    sys.meta_path.insert(0, _RegisterWithPillow())


def __getattr__(name: str):
    if name in _API:
        from . import simple
        return getattr(simple, name)
    raise AttributeError(f"module 'pixzip' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
