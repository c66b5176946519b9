"""Pillow images <-> the planes pixzip codes, with everything needed to rebuild the exact image.

Modes and their planes:
    L -> [grey]          LA -> [grey, alpha]       RGB -> [rgb]        RGBA -> [rgb, alpha]
    P -> [palette index] (palette and transparency kept)                 1 -> [grey 0/255]
Each plane is uint8 (H, W, channels) with channels 3 (rgb) or 1.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import PixzipError

MODES = ("L", "LA", "RGB", "RGBA", "P", "1")
# Output formats Pillow writes losslessly for every supported mode (by file suffix).
LOSSLESS_SUFFIXES = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                     ".ppm": "PPM", ".pgm": "PPM", ".pbm": "PPM", ".pnm": "PPM"}
DEFAULT_MAX_PIXELS = 1 << 28        # 268 megapixels; --max-pixels raises it


@dataclass
class ImageData:
    mode: str
    width: int
    height: int
    planes: list[np.ndarray]
    icc: bytes = b""
    palette_mode: str = ""
    palette: bytes = b""
    transparency: bytes = b""        # P mode: raw tRNS bytes, or a 2-byte index, or empty

    def pixel_bytes(self) -> bytes:
        """The bytes the checksum covers: every plane, then the palette."""
        return b"".join(np.ascontiguousarray(p).tobytes() for p in self.planes) + self.palette + self.transparency


def read_image(source, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Open a file path or bytes with Pillow and split it into planes; PixzipError if unsupported."""
    saved = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow's own bomb check (on the header, before decoding) with our limit, then restored
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PixzipError(f"{name}: image is larger than the limit of {max_pixels} pixels") from None
    except FileNotFoundError:
        raise PixzipError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise PixzipError(f"{name}: is a directory") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PixzipError(f"{name}: not an image Pillow can read ({e.__class__.__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if im.width * im.height > max_pixels:
        raise PixzipError(f"{name}: image is larger than the limit of {max_pixels} pixels")
    if im.mode not in MODES:
        raise PixzipError(f"{name}: image mode {im.mode} is not supported (supported: {', '.join(MODES)}; "
                          "16-bit, CMYK and float images are not)")
    frames = getattr(im, "n_frames", 1)
    if frames > 1:           # coding the first frame alone would silently lose the others
        raise PixzipError(f"{name}: has {frames} frames (animation or pages); pixzip codes single images only")
    return split(im)


def split(im: Image.Image) -> ImageData:
    icc = im.info.get("icc_profile") or b""
    a = np.asarray(im)
    d = ImageData(im.mode, im.width, im.height, [], icc=icc)
    if im.mode == "L":
        d.planes = [a[..., None]]
    elif im.mode == "LA":
        d.planes = [a[..., :1], a[..., 1:]]
    elif im.mode == "RGB":
        d.planes = [a]
    elif im.mode == "RGBA":
        d.planes = [a[..., :3], a[..., 3:]]
    elif im.mode == "1":
        d.planes = [(a.astype(np.uint8) * 255)[..., None]]
    elif im.mode == "P":
        d.planes = [a[..., None]]
        d.palette_mode = im.palette.mode
        d.palette = bytes(im.palette.palette)
        t = im.info.get("transparency")
        if isinstance(t, int):
            d.transparency = b"I" + t.to_bytes(2, "little")
        elif isinstance(t, bytes):
            d.transparency = b"B" + t
    d.planes = [np.ascontiguousarray(p, dtype=np.uint8) for p in d.planes]
    return d


def merge(d: ImageData) -> Image.Image:
    """Rebuild the Pillow image from decoded planes."""
    if d.mode == "L":
        im = Image.fromarray(d.planes[0][..., 0], "L")
    elif d.mode == "LA":
        im = Image.fromarray(np.concatenate(d.planes, axis=2), "LA")
    elif d.mode == "RGB":
        im = Image.fromarray(d.planes[0], "RGB")
    elif d.mode == "RGBA":
        im = Image.fromarray(np.concatenate(d.planes, axis=2), "RGBA")
    elif d.mode == "1":
        im = Image.fromarray(d.planes[0][..., 0] > 127)
    elif d.mode == "P":
        im = Image.fromarray(d.planes[0][..., 0], "P")
        im.putpalette(d.palette, rawmode=d.palette_mode)
        if d.transparency[:1] == b"I":
            im.info["transparency"] = int.from_bytes(d.transparency[1:3], "little")
        elif d.transparency[:1] == b"B":
            im.info["transparency"] = d.transparency[1:]
    else:
        raise PixzipError(f"unknown image mode {d.mode}")
    if d.icc:
        im.info["icc_profile"] = d.icc
    return im


def output_format(path_name: str) -> str | None:
    return LOSSLESS_SUFFIXES.get(Path(path_name).suffix.lower())


def encode_image_file(im: Image.Image, fmt: str) -> bytes:
    """Serialise losslessly in the given Pillow format, keeping the ICC profile and transparency: a
    format that cannot hold what the file restores is refused, never written without it."""
    buf = io.BytesIO()
    kw = {}
    if fmt == "WEBP":
        kw.update(lossless=True, exact=True)
        if im.mode not in ("RGB", "RGBA"):
            raise PixzipError(f"WebP cannot hold a {im.mode} image losslessly; use .png")
    if fmt == "PPM" and im.mode not in ("L", "RGB", "1"):
        raise PixzipError(f"PNM cannot hold a {im.mode} image; use .png")
    if fmt == "BMP" and im.mode in ("LA", "RGBA"):
        raise PixzipError(f"BMP cannot hold a {im.mode} image losslessly; use .png")
    if im.info.get("icc_profile"):
        if fmt not in ("PNG", "TIFF", "WEBP"):
            raise PixzipError(f"{fmt} cannot hold the image's ICC profile; use .png, .tif or .webp")
        kw["icc_profile"] = im.info["icc_profile"]
    if "transparency" in im.info:                # a transparent colour (PNG's tRNS)
        if fmt != "PNG":
            raise PixzipError(f"{fmt} cannot hold the image's transparent colour; use .png")
        kw["transparency"] = im.info["transparency"]
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()
