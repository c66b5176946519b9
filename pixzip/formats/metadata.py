"""Metadata kept verbatim beside the pixels: what a file carried besides its samples.

Kinds (the byte stored in format v4's metadata section, docs/FORMAT.md):
    PNG_CHUNK  a PNG ancillary chunk exactly as it was (type + payload) and its place in the file
               (before PLTE / before IDAT / after IDAT): tEXt, zTXt, iTXt (XMP), gAMA, cHRM, sRGB,
               pHYs, tIME, eXIf, iCCP, sBIT, bKGD, a truecolour image's tRNS... everything but the
               pixels' own chunks (IHDR, PLTE and tRNS of a palette image, IDAT, IEND)
    EXIF       EXIF bytes from a JPEG or WebP, as Pillow hands them over (a JPEG's start with
               "Exif\\0\\0"), or a TIFF's own descriptive tags in that form (tifftags.kept_tags)
    XMP        an XMP packet from a JPEG, WebP or TIFF
ICC profiles of non-PNG inputs stay in the header's ICC field (as in format v3).

A PNG's chunks can only be written back into a PNG, but for pHYs (a resolution), which a TIFF and a BMP
hold too; EXIF, XMP and ICC go into a PNG (eXIf, iTXt XML:com.adobe.xmp, iCCP), a WebP or a TIFF (its own
tags, `tifftags`); an output that cannot hold what the file carries is refused unless the user strips it
(`--strip`). A TIFF's descriptive tags are kept as an EXIF item (`tifftags`), a BMP's resolution as pHYs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from . import pngio, tifftags
from ..errors import PixzipError

PNG_CHUNK, EXIF, XMP = 1, 2, 3
KIND_NAMES = {PNG_CHUNK: "PNG chunk", EXIF: "EXIF", XMP: "XMP"}
MAX_ITEMS = 4096
MAX_TOTAL = 1 << 24            # 16 MiB of metadata at most: a bound a reader checks before allocating
EXIF_PREFIX = b"Exif\x00\x00"
XMP_KEYWORD = b"XML:com.adobe.xmp"
# chunks that describe how the pixels look or are transparent: never dropped by --strip
KEPT_BY_STRIP = (b"iCCP", b"tRNS")


@dataclass
class Item:
    kind: int
    data: bytes            # PNG_CHUNK: 4-byte type + payload
    place: int = 0         # PNG_CHUNK: pngio.BEFORE_PLTE / BEFORE_IDAT / AFTER_IDAT

    @property
    def chunk_type(self) -> bytes:
        return self.data[:4] if self.kind == PNG_CHUNK else b""

    def describe(self) -> str:
        if self.kind == PNG_CHUNK:
            return f"PNG {self.chunk_type.decode('latin-1')} ({len(self.data) - 4} bytes)"
        return f"{KIND_NAMES[self.kind]} ({len(self.data)} bytes)"


def describe_all(items: list[Item]) -> list[str]:
    return [i.describe() for i in items]


def from_png_chunks(chunks: list[pngio.Chunk]) -> list[Item]:
    return [Item(PNG_CHUNK, c.type + c.data, c.place) for c in chunks]


def from_pillow_info(info: dict) -> list[Item]:
    """EXIF and XMP of a JPEG, WebP or TIFF as Pillow read them."""
    items = []
    exif = info.get("exif")
    if isinstance(exif, bytes) and exif:
        items.append(Item(EXIF, exif))
    xmp = info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if isinstance(xmp, bytes) and xmp:
        items.append(Item(XMP, xmp))
    return items


def strip(items: list[Item]) -> list[Item]:
    """What --strip keeps: the colour profile and a truecolour image's transparent colour."""
    return [i for i in items if i.kind == PNG_CHUNK and i.chunk_type in KEPT_BY_STRIP]


def png_icc(items: list[Item]) -> bytes:
    """The ICC profile inside a kept iCCP chunk (name, 0, method 0, zlib data), or b""."""
    for i in items:
        if i.chunk_type == b"iCCP":
            payload = i.data[4:]
            name_end = payload.find(b"\x00")
            try:
                return zlib.decompress(payload[name_end + 2:])
            except zlib.error:
                return b""
    return b""


def as_png_chunks(items: list[Item], icc: bytes) -> list[pngio.Chunk]:
    """Everything as PNG chunks: kept chunks verbatim; ICC as iCCP, EXIF as eXIf and XMP as iTXt."""
    chunks = [pngio.Chunk(i.data[:4], i.data[4:], i.place) for i in items if i.kind == PNG_CHUNK]
    if icc and not any(c.type == b"iCCP" for c in chunks):
        chunks.insert(0, pngio.Chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc), pngio.BEFORE_PLTE))
    for i in items:
        if i.kind == EXIF:
            raw = i.data[len(EXIF_PREFIX):] if i.data.startswith(EXIF_PREFIX) else i.data
            chunks.append(pngio.Chunk(b"eXIf", raw, pngio.BEFORE_IDAT))
        elif i.kind == XMP:
            chunks.append(pngio.Chunk(b"iTXt", XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + i.data, pngio.BEFORE_IDAT))
    return chunks


def pillow_save_options(items: list[Item], icc: bytes, fmt: str) -> dict:
    """Pillow save() keywords that carry the metadata into `fmt`, or PixzipError naming what it cannot
    hold. ICC: PNG, TIFF, WebP; EXIF and XMP: WebP, TIFF (as its own tags: tifftags); a pHYs resolution:
    TIFF, BMP; other PNG chunks: PNG only (written by pngio)."""
    icc = icc or png_icc(items)
    kw = {}
    if icc:
        if fmt not in ("TIFF", "WEBP"):
            raise PixzipError(f"{fmt} cannot hold the image's ICC profile; use .png, .tif or .webp")
        kw["icc_profile"] = icc
    for i in items:
        if i.chunk_type == b"iCCP" or i.chunk_type == b"pHYs" and fmt in ("TIFF", "BMP"):
            continue                       # the profile: above; the resolution: below
        if i.chunk_type == b"tRNS":
            raise PixzipError(f"{fmt} cannot hold the image's transparent colour; use .png")
        if i.kind == PNG_CHUNK or fmt not in ("WEBP", "TIFF"):
            raise PixzipError(f"{fmt} cannot hold the image's {i.describe().split(' (')[0]} metadata; "
                              "use .png, or --strip to drop it")
        if fmt == "WEBP":
            kw["exif" if i.kind == EXIF else "xmp"] = i.data
    if fmt == "TIFF":
        kw["exif"] = tifftags.pillow_exif(*tiff_parts(items))
    elif fmt == "BMP":
        kw["dpi"] = bmp_dpi(resolution(items))
    return kw


def resolution(items: list[Item]) -> bytes | None:
    """The payload of a kept pHYs chunk (pixels per unit x and y, u32 big-endian, then the unit: 1 metre,
    0 none), or None."""
    return next((i.data[4:] for i in items if i.chunk_type == b"pHYs" and len(i.data) == 13), None)


def tiff_parts(items: list[Item]) -> tuple[bytes, bytes, bytes | None]:
    """What a written TIFF's tags come from: the EXIF block, the XMP packet, the pHYs payload."""
    exif = next((i.data for i in items if i.kind == EXIF), b"")
    xmp = next((i.data for i in items if i.kind == XMP), b"")
    return exif, xmp, resolution(items)


# -- BMP's resolution ------------------------------------------------------------------------------
def from_bmp(data: bytes) -> list[Item]:
    """A BMP's resolution (its header's pixels per metre, x and y) as the PNG chunk that says the same,
    pHYs in metres; nothing where the header has none (an OS/2 header, or both zero: unspecified)."""
    if len(data) < 46 or int.from_bytes(data[14:18], "little") < 40:
        return []
    x, y = (int.from_bytes(data[at:at + 4], "little", signed=True) for at in (38, 42))
    if not (x or y) or x < 0 or y < 0:
        return []
    return [Item(PNG_CHUNK, b"pHYs" + x.to_bytes(4, "big") + y.to_bytes(4, "big") + b"\x01", pngio.BEFORE_IDAT)]


def bmp_dpi(phys: bytes | None) -> tuple[float, float]:
    """Pillow's BMP `dpi` for a pHYs payload: it writes round(dpi / 0.0254) pixels per metre, so the
    metre values come back exactly; none: 0, unspecified (not Pillow's default of 96 dpi, which the
    source did not say). A unitless pHYs (an aspect ratio) BMP cannot hold."""
    if phys is None:
        return (0.0, 0.0)
    if phys[8] != 1:
        raise PixzipError("BMP cannot hold the image's PNG pHYs metadata (an aspect ratio without a unit); use "
                          ".png, or --strip to drop it")
    return tuple(int.from_bytes(phys[at:at + 4], "big") * 0.0254 for at in (0, 4))


# -- the container's section ------------------------------------------------------------------------
def check(items: list[Item], name: str = "") -> None:
    """The bounds every reader enforces (`decode`), enforced before anything is written: a file whose
    metadata a reader refuses would be a file lost. `name`: the input's, to begin the message with."""
    total = sum(len(i.data) for i in items)
    if len(items) > MAX_ITEMS or total > MAX_TOTAL:
        raise PixzipError(f"{name + ': ' if name else ''}metadata of {len(items)} items and {total} bytes is more "
                          f"than a .pxz holds ({MAX_ITEMS} items, {MAX_TOTAL >> 20} MiB); use --strip to drop it")


def encode(items: list[Item], varint) -> bytes:
    check(items)
    out = bytearray(varint(len(items)))
    for i in items:
        out += bytes([i.kind, i.place]) + varint(len(i.data)) + i.data
    return bytes(out)


def decode(reader, error) -> list[Item]:
    """Read the section with the container's reader; `error` builds the exception for corruption."""
    count = reader.varint()
    if count > MAX_ITEMS:
        raise error("header is corrupted (metadata count)")
    items, total = [], 0
    for _ in range(count):
        kind, place = reader.u8(), reader.u8()
        data = reader.blob()
        total += len(data)
        if kind not in KIND_NAMES or place > pngio.AFTER_IDAT or total > MAX_TOTAL or \
                (kind == PNG_CHUNK and len(data) < 4):
            raise error("header is corrupted (metadata)")
        items.append(Item(kind, data, place))
    return items
