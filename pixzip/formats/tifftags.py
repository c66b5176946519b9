"""A TIFF's own tags as metadata, and the kept metadata as tags of a TIFF that is written.

A TIFF keeps its metadata in the same directory as the tags that lay out its pixels: the resolution
(which sets a scan's printed size), orientation, artist, copyright, description, software, dates, GeoTIFF
and DNG values, IPTC and Photoshop blocks, and the EXIF and GPS sub-directories. An EXIF block is that
same structure (a TIFF header and directory, JPEG and WebP carry it as such), so a TIFF's descriptive tags
are kept as one EXIF item: everything but the layout tags below, the XMP packet (kept as XMP) and the ICC
profile (kept in the header). Writing a TIFF does the reverse: the EXIF item's tags (without any layout tag,
which would contradict the image written), the XMP packet and a PNG's pHYs resolution go into its
directory.

Pillow parses and writes the directories (`Image.Exif`), into an 8-bit TIFF it writes itself; into a
16-bit one, which tifffile writes, the EXIF and GPS directories are appended afterwards and pointed to
(`with_subdirectories`). Tags are compared by value, not by byte position (a TIFF written again lays its
directory out anew)."""

from __future__ import annotations

import io
from typing import NamedTuple

from ..errors import PixzipError

# tags that say how the samples are stored, or point at parts of the file: never kept, never written
LAYOUT_TAGS = frozenset({
    254, 255,                     # (New)SubfileType: which image of the file this is
    256, 257, 258, 259, 262,      # size, bits per sample, compression, photometric interpretation
    266, 273, 277, 278, 279,      # fill order, strips, samples per pixel
    284, 288, 289, 292, 293,      # planar configuration, free space, fax compression options
    317, 320, 322, 323, 324, 325,  # predictor, colour map, tiles
    330, 338, 339, 340, 341,      # sub-images, extra samples, sample format and range
    347, 512, 513, 514, 515, 517, 518, 519, 520, 521,   # JPEG compression's tables and offsets
    529, 530, 531,                # YCbCr sampling (pixzip reads grey and RGB only)
    700, 34675,                   # XMP and the ICC profile: kept on their own
})
EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
SUB_DIRECTORIES = (EXIF_IFD, GPS_IFD)
RESOLUTION_TAGS = (282, 283, 296)           # XResolution, YResolution, ResolutionUnit
INCH, CENTIMETRE, NO_UNIT = 2, 3, 1


def _exif(data: bytes):
    """An Image.Exif of a TIFF's (or an EXIF block's) first directory, its sub-directories loaded."""
    from PIL import Image
    exif = Image.Exif()
    exif.load(data)
    for tag in SUB_DIRECTORIES:
        if tag in exif:
            exif.get_ifd(tag)                # loaded, so that tobytes() writes it back
    if EXIF_IFD in exif and INTEROP_IFD in exif.get_ifd(EXIF_IFD):
        exif.get_ifd(INTEROP_IFD)
    return exif


def _without_layout(exif):
    for tag in [t for t in exif if t in LAYOUT_TAGS]:
        del exif[tag]
    return exif


def kept_tags(data: bytes) -> bytes:
    """A TIFF file's descriptive tags as an EXIF block ("Exif\\0\\0" + a TIFF directory), or b"" when it
    has none. PixzipError where its directory cannot be read."""
    try:
        exif = _without_layout(_exif(data))
        return exif.tobytes() if len(exif) else b""
    except Exception as e:           # a directory Pillow cannot parse: refuse rather than drop it
        raise PixzipError(f"its tags cannot be read ({e.__class__.__name__})") from None


def output_exif(exif_block: bytes, xmp: bytes, phys: bytes | None):
    """The Image.Exif whose tags a written TIFF carries: the kept EXIF block's (layout tags dropped, its
    EXIF and GPS directories loaded), the XMP packet, and a pHYs chunk's resolution (pixels per metre,
    written per centimetre, exactly; unit 0, an aspect ratio only: no unit). A resolution the EXIF block
    has wins over pHYs (both at once: a TIFF source's, written to PNG and read back)."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational
    exif = _without_layout(_exif(exif_block)) if exif_block else Image.Exif()
    if phys is not None and not any(t in exif for t in RESOLUTION_TAGS):
        x, y, unit = int.from_bytes(phys[:4], "big"), int.from_bytes(phys[4:8], "big"), phys[8]
        per = 100 if unit == 1 else 1
        exif.update({282: IFDRational(x, per), 283: IFDRational(y, per), 296: CENTIMETRE if unit == 1 else NO_UNIT})
    if xmp:
        exif[700] = xmp
    return exif


def pillow_exif(exif_block: bytes, xmp: bytes, phys: bytes | None) -> bytes:
    """output_exif as the EXIF block Pillow's TIFF writer merges into the directory it writes."""
    return output_exif(exif_block, xmp, phys).tobytes()


def _types(exif_block: bytes) -> dict:
    """Each first-directory tag's TIFF type (2 ASCII, 3 SHORT, 5 RATIONAL...) in an EXIF block."""
    from PIL import TiffImagePlugin
    raw = exif_block[len(b"Exif\x00\x00"):] if exif_block.startswith(b"Exif\x00\x00") else exif_block
    ifd = TiffImagePlugin.ImageFileDirectory_v2(raw[:8])
    fp = io.BytesIO(raw)
    fp.seek(ifd.next)
    ifd.load(fp)
    return dict(ifd.tagtype)


def orientation(exif_block: bytes) -> int:
    """The Orientation tag (1..8; 1 where there is none) of a kept EXIF block."""
    return int(_exif(exif_block).get(274, 1)) if exif_block else 1


class Directories(NamedTuple):
    """The EXIF and GPS directories that tifffile will not write, appended once it has (with_subdirectories):
    their Image.Exif (the pointers and the directories alone), and which placeholder tag of the first directory
    stands for which pointer."""
    exif: object
    placeholders: dict[int, int]


def tifffile_options(exif_block: bytes, xmp: bytes, phys: bytes | None) -> tuple[dict, Directories | None]:
    """output_exif's tags as tifffile.imwrite keywords (16-bit TIFFs): the resolution, description and software
    through its own arguments (it writes those tags itself), the rest as extra tags; and the EXIF and GPS
    directories (None if there are none): their pointers go in as placeholders under free private tag numbers,
    which `with_subdirectories` turns into the pointers."""
    exif = output_exif(exif_block, xmp, phys)
    tags = dict(exif)
    free = iter(c for c in range(65535, 0, -1) if c not in tags)
    placeholders = {next(free): tag for tag in SUB_DIRECTORIES if tag in tags}
    stand_in = {tag: code for code, tag in placeholders.items()}
    kw = {"metadata": None, "software": tags.pop(305, False), "description": tags.pop(270, None)}
    if any(t in tags for t in RESOLUTION_TAGS):
        x, y = tags.pop(282, 1), tags.pop(283, 1)
        kw["resolution"] = tuple((v.numerator, v.denominator) if hasattr(v, "numerator") else (int(v), 1)
                                 for v in (x, y))
        kw["resolutionunit"] = int(tags.pop(296, INCH))
    types = _types(exif_block) if exif_block else {}
    extra = []
    for tag, value in tags.items():
        if tag in SUB_DIRECTORIES:
            extra.append((stand_in[tag], 4, 1, 0, True))  # a LONG placeholder for the directory's offset
            continue
        kind = types.get(tag, 1 if tag == 700 else 2 if isinstance(value, str) else 7)
        values = value if isinstance(value, tuple) else (value,)
        if kind in (5, 10):                    # (S)RATIONAL: tifffile takes numerator, denominator pairs
            values = tuple(n for v in values for n in (v.numerator, v.denominator))
            count = len(values) // 2
        elif isinstance(value, (bytes, str)):
            values, count = value, 0          # tifffile counts bytes and strings itself
        else:
            count = len(values)
        extra.append((tag, kind, count, values if count != 1 or kind in (5, 10) else values[0], True))
    kw["extratags"] = extra
    for tag in [t for t in exif if t not in SUB_DIRECTORIES]:
        del exif[tag]                          # what is left: the directories' pointers and contents
    return kw, (Directories(exif, placeholders) if placeholders else None)


def with_subdirectories(tiff: bytes, directories: Directories | None) -> bytes:
    """A little-endian classic TIFF written with placeholder pointers (tifffile_options), with the EXIF and
    GPS directories appended and its first directory's pointers set to them. Pillow lays the directories
    out (Image.Exif.tobytes at the offset they will have): a small directory holding only the pointers, then
    the directories it points to (an EXIF directory's interoperability one too)."""
    if directories is None:
        return tiff
    if tiff[:4] != b"II*\x00":
        raise PixzipError("a 16-bit TIFF this large cannot hold the image's EXIF/GPS directory; use .png, or "
                          "--strip to drop it")
    out = bytearray(tiff) + b"\x00" * (len(tiff) & 1)     # directories start on a word boundary
    at = len(out)
    directories.exif.endian = "<"
    out += directories.exif.tobytes(at)[len(b"Exif\x00\x00") + 8:]
    offsets = dict(_entries(out, at))
    ifd0 = int.from_bytes(out[4:8], "little")
    entries = []
    for code, entry in _entry_positions(out, ifd0):
        record = bytearray(out[entry:entry + 12])
        if code in directories.placeholders:
            tag = directories.placeholders[code]
            record[0:2], record[8:12] = tag.to_bytes(2, "little"), offsets[tag].to_bytes(4, "little")
        entries.append(bytes(record))
    # a directory's entries go by ascending tag; an entry's value or offset does not depend on its place
    out[ifd0 + 2:ifd0 + 2 + 12 * len(entries)] = b"".join(sorted(entries, key=lambda e: e[:2][::-1]))
    return bytes(out)


def _entry_positions(data: bytes, ifd: int):
    """(tag, byte position of its 12-byte entry) for each entry of the little-endian directory at `ifd`."""
    count = int.from_bytes(data[ifd:ifd + 2], "little")
    for k in range(count):
        at = ifd + 2 + 12 * k
        yield int.from_bytes(data[at:at + 2], "little"), at


def _entries(data: bytes, ifd: int):
    """(tag, its 4-byte value field as an integer) for each entry of a little-endian directory."""
    for tag, at in _entry_positions(data, ifd):
        yield tag, int.from_bytes(data[at + 8:at + 12], "little")
