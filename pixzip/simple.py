"""The Python API: images (numpy arrays, Pillow images, files) to .pxz bytes and back.

    import pixzip
    data = pixzip.encode(array_or_pil_image)          # bytes of a .pxz file
    pixels = pixzip.decode(data)                       # numpy array, exactly the pixels encoded
    image = pixzip.decode_image(data)                  # a Pillow image (palette, ICC profile kept)
    pixzip.compress_file("photo.png")                  # -> photo.png.pxz, as `pixzip compress`

Built on pixzip.api (planes, models, container) and pixzip.formats.images (files, modes, metadata).
Every failure is a PixzipError whose message is one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import api, zoo
from .errors import PixzipError
from .formats import images
from .formats.images import ImageData

SUFFIX = ".pxz"
# A numpy array's last axis (channels) -> the image mode it is coded as
MODE_OF_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass
class Decoded:
    """What a .pxz file holds besides the samples: enough to rebuild the original file exactly."""
    pixels: np.ndarray        # (H, W) for one channel, else (H, W, C); uint8, uint16 (16-bit) or bool (mode 1)
    mode: str                 # L, LA, RGB, RGBA, P (pixels are palette indices) or 1
    depth: int                # bits per sample: 8, 16, or a PNG's declared 1/2/4
    icc: bytes = b""
    palette: bytes = b""      # mode P: the palette's bytes (palette_mode says their layout)
    palette_mode: str = ""
    metadata: list = field(default_factory=list)      # formats.metadata.Item: EXIF, XMP, PNG chunks, verbatim
    models: list = field(default_factory=list)        # the names of the models that coded the planes


def encode(image, effort: int | None = None, *, model: str | None = None, tile: int | None = None,
           strip: bool = False, threads: int = 0, format_version: int | None = None) -> bytes:
    """Compress an image to the bytes of a .pxz file.

    `image`: a numpy array (H, W) or (H, W, 1-4) of uint8 or uint16 (16-bit), or bool (bilevel); a
    Pillow image (modes L, LA, RGB, RGBA, P, 1, I;16; its ICC profile, EXIF and XMP are kept); or a
    path to an image file (read exactly as `pixzip compress` reads it). `effort` picks the default
    models (None: the default level; see `pixzip compress --help`), `model` a model name or .pxm path,
    `tile` the tile size, `strip` drops metadata, `threads` the cores (0: all). The bytes do not depend
    on `threads`."""
    data = _image_data(image)
    if strip:
        from .formats import metadata
        data.metadata = metadata.strip(data.metadata)
    options = {"workers": threads}
    if effort is not None:
        options["effort"] = effort
    if tile is not None:
        options["tile"] = tile
    if format_version is not None:
        options["version"] = format_version
    models = [zoo.load_model(model)] if model else []
    return api.compress(data, models, **options)[0]


def decode_full(data: bytes, *, threads: int = 0) -> Decoded:
    """Decompress .pxz bytes: the samples with their mode, bit depth, profile, palette and metadata."""
    image, header = api.decompress(_as_bytes(data), workers=threads)
    return Decoded(_samples(image), image.mode, image.depth, image.icc, image.palette, image.palette_mode,
                   list(image.metadata), [m.name for m in header.models])


def decode(data: bytes, *, threads: int = 0) -> np.ndarray:
    """Decompress .pxz bytes to the pixels encoded: (H, W) for grey, palette and bilevel images (palette
    indices, bool), (H, W, C) otherwise; uint16 for 16-bit images. decode_full gives mode and metadata."""
    return decode_full(data, threads=threads).pixels


def decode_image(data: bytes, *, threads: int = 0):
    """Decompress .pxz bytes to a Pillow image (palette, transparency and ICC profile set). A 16-bit
    grey image comes back in mode I;16; 16-bit colour has no Pillow mode: use decode() for it."""
    image, _ = api.decompress(_as_bytes(data), workers=threads)
    if image.depth == 16:
        if image.mode != "L":
            raise PixzipError(f"a 16-bit {image.mode} image has no Pillow mode; use pixzip.decode for its samples")
        from PIL import Image
        return Image.fromarray(np.ascontiguousarray(image.planes[0][..., 0], dtype="<u2"))     # mode I;16
    return images.merge(image)


def compress_file(source, dest=None, effort: int | None = None, *, force: bool = False, **options) -> Path:
    """Compress an image file to `dest` (default: the source's name + .pxz), as `pixzip compress`
    does; `options` as for encode. An existing `dest` is refused unless `force`. Returns dest."""
    source = Path(source)
    dest = Path(dest) if dest is not None else source.with_name(source.name + SUFFIX)
    _refuse_existing(dest, force)
    _write(dest, encode(source, effort, **options), force)
    return dest


def decompress_file(source, dest=None, *, force: bool = False, strip: bool = False, threads: int = 0) -> Path:
    """Decompress a .pxz file to `dest` (default: the name without .pxz; the format from dest's suffix,
    PNG by default), with its metadata unless `strip`. An existing `dest` is refused unless `force`."""
    source = Path(source)
    if dest is None:
        if source.suffix != SUFFIX:
            raise PixzipError(f"{source}: unknown suffix, expected {SUFFIX} (name the output)")
        dest = source.with_suffix("")
        if images.output_format(dest.name) is None:
            dest = dest.with_name(dest.name + ".png")
    dest = Path(dest)
    fmt = images.output_format(dest.name)
    if fmt is None:
        raise PixzipError(f"{dest}: unknown or lossy output format (use .png, .bmp, .tif, .webp, .ppm)")
    _refuse_existing(dest, force)
    try:
        image, _ = api.decompress(source.read_bytes(), workers=threads)
    except PixzipError as e:
        raise PixzipError(f"{source}: {e}") from None
    _write(dest, images.encode(image, fmt, strip), force)
    return dest


def _image_data(image) -> ImageData:
    if isinstance(image, (str, os.PathLike)):
        return images.read_image(str(image), str(image))
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if hasattr(image, "mode") and hasattr(image, "getdata"):        # a Pillow image, without importing PIL
        return _from_pillow(image)
    raise PixzipError(f"cannot encode a {type(image).__name__}: pass a numpy array, a Pillow image or a path")


def _from_array(a: np.ndarray) -> ImageData:
    if a.dtype == bool and a.ndim == 2:
        return ImageData("1", a.shape[1], a.shape[0], [(a.astype(np.uint8) * 255)[..., None]], depth=1)
    if a.dtype not in (np.uint8, np.uint16):
        raise PixzipError(f"arrays of {a.dtype} are not supported: uint8, uint16 (16-bit) or bool (bilevel)")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in MODE_OF_CHANNELS:
        raise PixzipError(f"an array of shape {a.shape} is not an image: (H, W) or (H, W, 1-4)")
    mode = MODE_OF_CHANNELS[a.shape[2]]
    a = np.ascontiguousarray(a)
    planes = [a[..., :3], a[..., 3:]] if mode == "RGBA" else [a[..., :1], a[..., 1:]] if mode == "LA" else [a]
    return ImageData(mode, a.shape[1], a.shape[0], [np.ascontiguousarray(p) for p in planes],
                     depth=16 if a.dtype == np.uint16 else 8)


def _from_pillow(im) -> ImageData:
    """A Pillow image's planes, ICC profile, EXIF and XMP; I;16 is 16-bit grey."""
    from .formats import metadata
    if im.mode == "I;16":
        d = ImageData("L", im.width, im.height, [np.asarray(im).astype(np.uint16)[..., None]],
                      icc=im.info.get("icc_profile") or b"", depth=16)
    elif im.mode in images.MODES:
        d = images.split(im)
    else:
        raise PixzipError(f"image mode {im.mode} is not supported (supported: {', '.join(images.MODES)}, I;16)")
    d.metadata = metadata.from_pillow_info(im.info)
    return d


def _samples(image: ImageData) -> np.ndarray:
    a = image.planes[0] if len(image.planes) == 1 else np.concatenate(image.planes, axis=2)
    if image.mode == "1":
        return a[..., 0] > 127
    return a[..., 0] if a.shape[2] == 1 else a


def _as_bytes(data) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise PixzipError(f"decode takes the bytes of a .pxz file, not a {type(data).__name__} "
                      "(for a file: pixzip.decompress_file)")


def _refuse_existing(dest: Path, force: bool):
    if dest.exists() and not force:
        raise PixzipError(f"{dest}: already exists (use force=True to overwrite)")


def _write(dest: Path, data: bytes, force: bool):
    """Atomically, as the CLI writes: a temporary file in the same folder, then a rename (a link unless
    forcing, so that a file created meanwhile is not clobbered)."""
    from .cli.common import write_output
    write_output(str(dest), data, force)
