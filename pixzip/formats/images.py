"""Image files <-> the planes pixzip codes, with everything needed to rebuild the exact file's content.

Modes and their planes:
    L -> [grey]          LA -> [grey, alpha]       RGB -> [rgb]        RGBA -> [rgb, alpha]
    P -> [palette index] (palette and transparency kept)                 1 -> [grey 0/255]
Each plane is (H, W, channels) with channels 3 (rgb) or 1: uint8, or uint16 for 16-bit images.

Nothing is read through a path that may drop bits: the bit depth and channels come from the file itself
(the PNG's IHDR, the TIFF's tags, the PNM's header), and 16-bit samples are read by pngio (pypng where the
compiled library is not built), tifffile or our PNM code, where Pillow would truncate them. A file whose
content cannot be kept (CMYK, float or 32-bit samples, several frames) is refused with one line.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PixzipError
from . import metadata, pngio, pnm, tifftags

if TYPE_CHECKING:                    # Pillow is imported where it is used: decompressing to PNG needs none
    from PIL import Image

MODES = ("L", "LA", "RGB", "RGBA", "P", "1")
# Output formats Pillow writes losslessly for every supported mode (by file suffix).
LOSSLESS_SUFFIXES = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                     ".ppm": "PPM", ".pgm": "PPM", ".pbm": "PPM", ".pnm": "PPM"}
DEFAULT_MAX_PIXELS = 1 << 28        # 268 megapixels; --max-pixels raises it
MODE_OF_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")


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
    depth: int = 8                   # 16: uint16 planes; 1, 2, 4: a PNG's declared depth (see container.DEPTHS)
    metadata: list = field(default_factory=list)      # metadata.Item, kept verbatim
    lossy: str = ""                  # the source's lossy format ("JPEG", "lossy WebP"): for the warning
    notes: list = field(default_factory=list)         # other one-line warnings about the source

    def pixel_bytes(self) -> bytes:
        """The bytes the checksum covers: every plane (16-bit little-endian), then the palette."""
        return b"".join(np.ascontiguousarray(p, dtype="<u2" if self.depth == 16 else np.uint8).tobytes()
                        for p in self.planes) + self.palette + self.transparency


def read_image(source, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read a file path or bytes into planes and metadata; PixzipError (one line) if it cannot be kept."""
    data = read_bytes(source, name)
    if pngio.is_png(data):
        return _read_png(data, name, max_pixels)
    if pnm.is_binary_pnm(data):
        mode, samples, depth = pnm.read(data, name, lambda w, h: check_size(w, h, name, max_pixels))
        return ImageData(mode, samples.shape[1], samples.shape[0], [samples], depth=depth)
    if data[:4] in TIFF_MAGICS:
        return _read_tiff(data, name, max_pixels)
    d = _from_pillow(_open_with_pillow(data, name, max_pixels), data, name)
    if data[:2] == b"BM":
        d.metadata += metadata.from_bmp(data)
    return d


def _from_pillow(im: Image.Image, data: bytes, name: str) -> ImageData:
    if im.mode not in MODES:
        raise PixzipError(f"{name}: image mode {im.mode} is not supported (supported: {', '.join(MODES)} at "
                          "8 bits, and 16-bit grey/RGB with or without alpha; CMYK, float and 32-bit "
                          "images are not)")
    d = split(im)
    d.metadata = metadata.from_pillow_info(im.info)
    if im.mode in ("L", "RGB") and "transparency" in im.info:      # a transparent colour: PNG's tRNS
        d.metadata.append(metadata.Item(metadata.PNG_CHUNK, b"tRNS" + _trns(im.info["transparency"]),
                                        pngio.BEFORE_IDAT))
    d.lossy = _lossy_kind(im.format, data)
    return d


def _trns(value) -> bytes:
    values = value if isinstance(value, tuple) else (value,)
    return b"".join(int(v).to_bytes(2, "big") for v in values)


def read_bytes(source, name: str) -> bytes:
    """A path's bytes (or the bytes given); a one-line PixzipError naming the file if unreadable."""
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise PixzipError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise PixzipError(f"{name}: is a directory") from None
    except OSError as e:
        raise PixzipError(f"{name}: {e.strerror}") from None


def check_size(width: int, height: int, name: str, max_pixels: int):
    if width * height > max_pixels:
        raise PixzipError(f"{name}: image is larger than the limit of {max_pixels} pixels")


def _open_with_pillow(data: bytes, name: str, max_pixels: int) -> Image.Image:
    from PIL import Image
    saved = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow's own bomb check (on the header, before decoding) with our limit, then restored
        Image.MAX_IMAGE_PIXELS = max_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            frames = getattr(im, "n_frames", 1)
            if frames > 1:           # coding the first frame alone would silently lose the others
                raise PixzipError(f"{name}: has {frames} frames (animation or pages); pixzip codes single "
                                  "images only")
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PixzipError(f"{name}: image is larger than the limit of {max_pixels} pixels") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PixzipError(f"{name}: not an image Pillow can read ({e.__class__.__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    check_size(im.width, im.height, name, max_pixels)
    return im


def _lossy_kind(fmt: str, data: bytes) -> str:
    if fmt in ("JPEG", "MPO"):
        return "JPEG"
    if fmt == "WEBP" and _webp_is_lossy(data):
        return "lossy WebP"
    return ""


def _webp_is_lossy(data: bytes) -> bool:
    """A WebP's image is lossy when it is a VP8 chunk (VP8L is the lossless one)."""
    pos = 12
    while pos + 8 <= len(data):
        fourcc, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if fourcc in (b"VP8 ", b"ANMF"):
            return True
        if fourcc == b"VP8L":
            return False
        pos += 8 + size + (size & 1)
    return False


# -- PNG ----------------------------------------------------------------------------------------------
def _read_png(data: bytes, name: str, max_pixels: int) -> ImageData:
    """The IHDR decides: 16-bit through pngio.read_pixels16, everything else through Pillow (exact at <= 8 bits);
    every ancillary chunk kept verbatim."""
    ihdr = pngio.read_header(data, name)
    check_size(ihdr.width, ihdr.height, name, max_pixels)
    chunks = pngio.kept_chunks(data, name, ihdr.colour_type)
    actl = next((c for c in chunks if c.type == b"acTL"), None)
    if actl is not None:      # an APNG: coding the default image alone would lose the animation
        frames = int.from_bytes(actl.data[:4], "big")
        raise PixzipError(f"{name}: has {frames} frames (animated PNG); pixzip codes single images only")
    if ihdr.depth == 16:
        samples = pngio.read_pixels16(data, name)
        mode = MODE_OF_CHANNELS[samples.shape[2]]
        d = ImageData(mode, ihdr.width, ihdr.height, _planes_of(samples), depth=16)
    else:
        im = _open_with_pillow(data, name, max_pixels)
        if im.mode not in MODES:
            raise PixzipError(f"{name}: PNG opens as mode {im.mode}, which pixzip does not support")
        d = split(im, with_profile=False)
        if ihdr.colour_type == 3:      # the PLTE and tRNS chunks exactly as they are (Pillow may pad them)
            d.depth = ihdr.depth
            found = dict((t, p) for t, p in pngio.iter_chunks(data, name) if t in (b"PLTE", b"tRNS"))
            d.palette_mode, d.palette = "RGB", found[b"PLTE"]
            d.transparency = b"B" + found[b"tRNS"] if b"tRNS" in found else b""
        elif ihdr.colour_type == 0 and ihdr.depth in (2, 4):
            d.depth = ihdr.depth
    d.metadata = metadata.from_png_chunks(chunks)
    return d


def _planes_of(samples: np.ndarray) -> list[np.ndarray]:
    """(H, W, C) -> the mode's planes: colour or grey, then alpha."""
    c = samples.shape[2]
    if c in (2, 4):
        return [np.ascontiguousarray(samples[..., :c - 1]), np.ascontiguousarray(samples[..., c - 1:])]
    return [np.ascontiguousarray(samples)]


# -- TIFF ---------------------------------------------------------------------------------------------
def _read_tiff(data: bytes, name: str, max_pixels: int) -> ImageData:
    """8-bit TIFFs through Pillow (palette, CMYK refusal, ICC, XMP); over 8 bits, or what Pillow cannot
    open (16-bit grey+alpha), through tifffile, which keeps every bit."""
    try:
        im = _open_with_pillow(data, name, max_pixels)
    except PixzipError as e:
        if "frames" in str(e) or "limit" in str(e):
            raise
        return _read_tiff_exact(data, name, max_pixels)
    if _tiff_bits(im) > 8:
        return _read_tiff_exact(data, name, max_pixels)
    d = _from_pillow(im, data, name)
    if im.tag_v2.get(259) in (6, 7):            # old-style and new-style JPEG compression
        d.lossy = "JPEG-compressed TIFF"
    d.metadata = _tiff_tags(data, name) + d.metadata
    if d.metadata and d.metadata[0].kind == metadata.EXIF:
        _unturn(d, tifftags.orientation(d.metadata[0].data))
    return d


# What Pillow does to a TIFF's raster on loading it (ImageOps.exif_transpose, by the Orientation tag),
# undone on the (H, W, C) planes: the raster is kept as stored, the tag with it, as for a JPEG
_UNDO_ORIENTATION = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                     5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 1),
                     7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, -1)}


def _unturn(d: ImageData, orientation: int) -> None:
    if orientation in _UNDO_ORIENTATION:
        d.planes = [np.ascontiguousarray(_UNDO_ORIENTATION[orientation](p)) for p in d.planes]
        d.height, d.width = d.planes[0].shape[:2]


def _tiff_tags(data: bytes, name: str) -> list:
    """The TIFF's descriptive tags (resolution, orientation, artist, EXIF, GPS...) as one EXIF item."""
    try:
        tags = tifftags.kept_tags(data)
    except PixzipError as e:
        raise PixzipError(f"{name}: {e}") from None
    return [metadata.Item(metadata.EXIF, tags)] if tags else []


def _tiff_bits(im: Image.Image) -> int:
    bits = im.tag_v2.get(258, (8,))
    return max(bits) if isinstance(bits, tuple) else int(bits)


def _read_tiff_exact(data: bytes, name: str, max_pixels: int) -> ImageData:
    """Grey or RGB TIFFs, with or without unassociated alpha, 8 or 16 bits, through tifffile."""
    try:
        import tifffile
    except ImportError:
        raise PixzipError(f"{name}: this TIFF needs tifffile (pip install tifffile)") from None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if len(tif.pages) != 1:
                raise PixzipError(f"{name}: has {len(tif.pages)} pages; pixzip codes single images only")
            page = tif.pages[0]
            samples = page.asarray()
            photometric, extras = int(page.photometric), tuple(page.extrasamples)
            planar, sample_format = int(page.planarconfig), int(page.sampleformat)
            icc = page.tags[34675].value if 34675 in page.tags else b""
            xmp = page.tags[700].value if 700 in page.tags else b""
    except PixzipError:
        raise
    except Exception as e:             # tifffile raises many kinds; any of them means: cannot read
        raise PixzipError(f"{name}: TIFF cannot be decoded ({e.__class__.__name__})") from None
    if samples.dtype not in (np.uint8, np.uint16) or sample_format != 1:
        raise PixzipError(f"{name}: TIFF samples of type {samples.dtype} are not supported (8- and 16-bit "
                          "unsigned integers are)")
    if samples.ndim == 3 and planar == 2:
        samples = np.moveaxis(samples, 0, -1)
    samples = samples[..., None] if samples.ndim == 2 else samples
    if photometric not in (1, 2) or samples.ndim != 3 or samples.shape[2] not in MODE_OF_CHANNELS or \
            any(e != 2 for e in extras):
        raise PixzipError(f"{name}: TIFF layout not supported (photometric {photometric}, extra samples "
                          f"{extras}; supported: grey or RGB, unassociated alpha)")
    h, w = samples.shape[:2]
    check_size(w, h, name, max_pixels)
    d = ImageData(MODE_OF_CHANNELS[samples.shape[2]], w, h, _planes_of(samples), icc=bytes(icc),
                  depth=16 if samples.dtype == np.uint16 else 8)
    d.metadata = _tiff_tags(data, name) + metadata.from_pillow_info({"xmp": xmp})
    return d


def split(im: Image.Image, with_profile: bool = True) -> ImageData:
    """A Pillow image's planes (its ICC profile too unless the caller keeps it otherwise)."""
    icc = (im.info.get("icc_profile") or b"") if with_profile else b""
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
        d.depth = 1
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
    from PIL import Image
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


def encode(d: ImageData, fmt: str, strip: bool = False, threads: int = 1) -> bytes:
    """The file to restore, in `fmt`: PNG by pngio (the source's bit depth, palette and chunks), 16-bit
    TIFF and PNM by tifffile and pnm, the rest by Pillow with the metadata it can carry. What the format
    cannot hold is refused (PixzipError), never dropped; `strip` drops the metadata first (but the
    ICC profile and transparency, which decide the pixels' look). `threads`: PNG's deflate (the same
    bytes for any count)."""
    items = metadata.strip(d.metadata) if strip else d.metadata
    if fmt == "PNG":
        return _encode_png(d, items, threads)
    if d.depth == 16:
        return _encode16(d, items, fmt)
    return encode_image_file(merge(d), fmt, metadata.pillow_save_options(items, d.icc, fmt))


def _encode_png(d: ImageData, items: list, threads: int) -> bytes:
    samples = np.concatenate(d.planes, axis=2)
    depth = d.depth
    if d.mode == "1":
        samples = samples // 255
    elif d.mode == "L" and depth < 8:            # the planes hold the samples scaled to 0..255
        samples = samples // (255 // ((1 << depth) - 1))
    palette = transparency = b""
    if d.mode == "P":
        palette, transparency = _png_palette(d)
    return pngio.write(samples, pngio.COLOUR_TYPES[d.mode], depth, palette, transparency,
                       metadata.as_png_chunks(items, d.icc), threads)


def _png_palette(d: ImageData) -> tuple[bytes, bytes]:
    """PLTE and tRNS payloads of a palette image (Pillow's RGBA palettes split into the two)."""
    if d.palette_mode == "RGBA":
        entries = np.frombuffer(d.palette, dtype=np.uint8).reshape(-1, 4)
        alpha = entries[:, 3].tobytes()
        return entries[:, :3].tobytes(), (alpha.rstrip(b"\xff") if not d.transparency else alpha)
    if d.transparency[:1] == b"I":               # one transparent index (as Pillow reads a GIF's)
        index = int.from_bytes(d.transparency[1:3], "little")
        return d.palette, b"\xff" * index + b"\x00"
    return d.palette, d.transparency[1:]


def _encode16(d: ImageData, items: list, fmt: str) -> bytes:
    samples = np.concatenate(d.planes, axis=2)
    if fmt == "PPM":
        if d.mode not in ("L", "RGB"):
            raise PixzipError(f"PNM cannot hold a {d.mode} image; use .png")
        metadata.pillow_save_options(items, d.icc, fmt)          # refuses what PNM cannot hold
        return pnm.write(samples, 16)
    if fmt != "TIFF":
        raise PixzipError(f"{fmt} cannot hold a 16-bit image; use .png, .tif or .ppm")
    icc = metadata.pillow_save_options(items, d.icc, fmt).get("icc_profile", b"")   # refuses what TIFF cannot hold
    tags, directories = tifftags.tifffile_options(*metadata.tiff_parts(items))
    try:
        import tifffile
    except ImportError:
        raise PixzipError("writing a 16-bit TIFF needs tifffile (pip install tifffile); use .png") from None
    if icc:
        tags["extratags"].append((34675, 7, None, icc, True))
    buf = io.BytesIO()
    tifffile.imwrite(buf, samples if samples.shape[2] > 1 else samples[..., 0],
                     photometric="rgb" if samples.shape[2] >= 3 else "minisblack",
                     extrasamples=("unassalpha",) if d.mode in ("LA", "RGBA") else None,
                     compression="zlib", **tags)
    return tifftags.with_subdirectories(buf.getvalue(), directories)


def encode_image_file(im: Image.Image, fmt: str, extra: dict | None = None) -> bytes:
    """Serialise losslessly in the given Pillow format, keeping the ICC profile and transparency: a
    format that cannot hold what the file restores is refused, never written without it. `extra`:
    more save() keywords (metadata.pillow_save_options)."""
    buf = io.BytesIO()
    kw = dict(extra or {})
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
