"""PNG bytes without Pillow's truncation: the header, the raw chunks, 16-bit pixels, and a writer.

Pillow opens a 16-bit LA/RGB/RGBA PNG as 8-bit modes and a 2- or 4-bit grey PNG as 8-bit grey, so the
file's own IHDR decides the bit depth and colour type; 16-bit pixels are inflated here and unfiltered by the
compiled library (pypng, pure Python and exact, where it is not built, and for interlaced files). The writer
is ours (numpy filters + zlib) so that a restored file has the source's bit depth, colour type, palette and
every ancillary chunk, verbatim and in its original place.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import PixzipError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type -> channels (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
COLOUR_TYPES = {"L": 0, "RGB": 2, "P": 3, "LA": 4, "RGBA": 6, "1": 0}
# where a kept chunk sits: its place is part of the PNG's meaning (e.g. tRNS after PLTE, iCCP before)
BEFORE_PLTE, BEFORE_IDAT, AFTER_IDAT = 0, 1, 2
CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")


@dataclass
class Ihdr:
    width: int
    height: int
    depth: int
    colour_type: int
    interlace: int


@dataclass
class Chunk:
    type: bytes          # 4 ASCII letters
    data: bytes
    place: int           # BEFORE_PLTE, BEFORE_IDAT or AFTER_IDAT


def is_png(data: bytes) -> bool:
    return data[:8] == SIGNATURE


def iter_chunks(data: bytes, name: str):
    """(type, payload) of every chunk, CRCs checked, up to IEND."""
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise PixzipError(f"{name}: PNG is truncated (chunk {ctype!r})")
        payload = data[pos + 8:pos + 8 + length]
        if zlib.crc32(ctype + payload) != struct.unpack(">I", data[end - 4:end])[0]:
            raise PixzipError(f"{name}: PNG chunk {ctype.decode('latin-1')} is corrupted (CRC mismatch)")
        yield ctype, payload
        if ctype == b"IEND":
            return
        pos = end
    raise PixzipError(f"{name}: PNG is truncated (no IEND)")


def read_header(data: bytes, name: str) -> Ihdr:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise PixzipError(f"{name}: PNG is truncated or has no IHDR")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if ctype not in CHANNELS:
        raise PixzipError(f"{name}: PNG colour type {ctype} is invalid")
    return Ihdr(w, h, depth, ctype, interlace)


def kept_chunks(data: bytes, name: str, colour_type: int) -> list[Chunk]:
    """Every ancillary chunk (and a truecolour image's suggested PLTE), verbatim, with its place. A
    palette image's PLTE and tRNS are pixel data (kept with the palette), not listed here."""
    out, place = [], BEFORE_PLTE
    for ctype, payload in iter_chunks(data, name):
        if ctype == b"IDAT":
            place = AFTER_IDAT
        elif ctype == b"PLTE":
            if colour_type != 3:       # a truecolour image's suggested palette: kept in its place
                out.append(Chunk(ctype, payload, place))
            place = BEFORE_IDAT
        elif ctype not in CRITICAL and not (colour_type == 3 and ctype == b"tRNS"):
            out.append(Chunk(ctype, payload, place))
    return out


def read_pixels16(data: bytes, name: str) -> np.ndarray:
    """A 16-bit PNG's samples, (H, W, channels) uint16, exactly (tRNS is not applied): inflated by zlib and
    unfiltered by the compiled library where it is built (a non-interlaced file), else by pypng (pure
    Python: about 1.6 s a megapixel), which is also the reference the compiled path is tested against."""
    ihdr = read_header(data, name)
    unfilter = _native_unfilter()
    if unfilter is None or ihdr.interlace:
        return _pypng_pixels16(data, name)
    channels = CHANNELS[ihdr.colour_type]
    rowbytes = ihdr.width * channels * 2
    raw = _inflate(b"".join(p for t, p in iter_chunks(data, name) if t == b"IDAT"), ihdr.height * (rowbytes + 1), name)
    if unfilter(raw.ctypes.data, ihdr.height, rowbytes, channels * 2) != 0:
        raise PixzipError(f"{name}: PNG cannot be decoded (a row's filter type is invalid)")
    rows = raw.reshape(ihdr.height, rowbytes + 1)[:, 1:]            # each row without its filter byte
    return rows.view(">u2").astype(np.uint16).reshape(ihdr.height, ihdr.width, channels)


def _inflate(stream: bytes, size: int, name: str) -> np.ndarray:
    """IDAT's zlib stream inflated into exactly `size` bytes (the rows the header promises): a stream that
    gives fewer, more, or does not end is refused, and more than `size` is never inflated."""
    d = zlib.decompressobj()
    try:
        raw = d.decompress(stream, size + 1)
    except zlib.error:
        raise PixzipError(f"{name}: PNG cannot be decoded (its image data is not a valid zlib stream)") from None
    if len(raw) != size or not d.eof:
        raise PixzipError(f"{name}: PNG cannot be decoded (its image data has the wrong length)")
    return np.frombuffer(bytearray(raw), np.uint8)


@functools.cache
def _native_unfilter():
    """The compiled library's pz_png_unfilter, declared once, or None where the library is not built."""
    from . import clib
    lib = clib.library()
    if lib is None or not hasattr(lib, "pz_png_unfilter"):
        return None
    fn = lib.pz_png_unfilter
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _pypng_pixels16(data: bytes, name: str) -> np.ndarray:
    import png
    try:
        w, h, rows, info = png.Reader(bytes=data).read_flat()
    except (png.Error, ValueError, zlib.error) as e:
        raise PixzipError(f"{name}: PNG cannot be decoded ({e.__class__.__name__})") from None
    return np.asarray(rows, dtype=np.uint16).reshape(h, w, info["planes"])


# -- writing ------------------------------------------------------------------------------------------
def _chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def _pack_rows(samples: np.ndarray, depth: int) -> np.ndarray:
    """(H, W, C) integer samples -> (H, row bytes) uint8 as PNG stores them (big-endian, sub-byte
    samples packed high bits first)."""
    h = samples.shape[0]
    if depth == 16:
        return samples.astype(">u2").view(np.uint8).reshape(h, -1)
    if depth == 8:
        return samples.astype(np.uint8).reshape(h, -1)
    flat = samples.reshape(h, -1).astype(np.uint8)
    bits = np.unpackbits(flat[..., None], axis=2)[..., 8 - depth:]       # each sample's low `depth` bits
    return np.packbits(bits.reshape(h, -1), axis=1)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter(rows: np.ndarray, bpp: int, above: np.ndarray | None = None) -> bytes:
    """Each row with the filter of least absolute sum (libpng's heuristic), a band of rows at once;
    `above`: the row before the band (None: the image's first row, whose row above is zeros)."""
    x = rows.astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]
    if above is not None:
        b[0] = above
        c[0, bpp:] = above[:-bpp]
    candidates = np.stack([x, x - a, x - b, x - (a + b) // 2, x - _paeth(a, b, c)]) & 0xFF
    cost = np.minimum(candidates, 256 - candidates).sum(axis=2)       # bytes as signed
    best = cost.argmin(axis=0)
    chosen = candidates[best, np.arange(len(rows))].astype(np.uint8)
    return np.concatenate([best.astype(np.uint8)[:, None], chosen], axis=1).tobytes()


BLOCK_BYTES = 1 << 18     # rows deflated together (whole rows; at least one): the unit of parallel work
WINDOW = 1 << 15          # deflate's window: a block starts with the previous block's last 32 KiB as dictionary


def _block_rows(row_bytes: int) -> int:
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def _filtered(rows: np.ndarray, bpp: int, s: int, e: int) -> bytes:
    """Rows s..e filtered as in the whole image (row s - 1 above them)."""
    return _filter(rows[s:e], bpp, rows[s - 1].astype(np.int16) if s else None)


def _deflate_block(rows: np.ndarray, bpp: int, s: int, e: int, last: bool) -> tuple[bytes, int, int]:
    """(raw deflate of the filtered rows s..e, their Adler-32 with its length) as pigz makes a block: the
    dictionary is the tail of the filtered rows before s (filtered again here, so that every block is
    independent work), ended by a sync flush (the final block by the stream's end)."""
    data = _filtered(rows, bpp, s, e)
    options = {}
    if s:
        back = max(0, s - -(-WINDOW // (rows.shape[1] + 1)))          # the rows whose bytes fill a window
        options["zdict"] = _filtered(rows, bpp, back, s)[-WINDOW:]
    z = zlib.compressobj(6, zlib.DEFLATED, -15, **options)
    out = z.compress(data) + z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return out, zlib.adler32(data), len(data)


def _idat(rows: np.ndarray, bpp: int, threads: int = 1) -> bytes:
    """The zlib stream of the filtered rows, deflated in blocks of whole rows on `threads` threads (memory
    bounded by the blocks in flight, not the image). The bytes depend on the image only, never on the
    thread count: block boundaries are fixed by BLOCK_BYTES and each block's dictionary is the data before
    it, as pigz does."""
    h = rows.shape[0]
    step = _block_rows(rows.shape[1])
    starts = list(range(0, h, step)) or [0]
    jobs = [(s, min(h, s + step), s + step >= h) for s in starts]

    def one(job):
        return _deflate_block(rows, bpp, *job)
    if threads > 1 and len(jobs) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(threads, len(jobs))) as pool:
            blocks = list(pool.map(one, jobs))
    else:
        blocks = [one(job) for job in jobs]
    adler = 1
    for _, a, n in blocks:
        adler = _adler32_combine(adler, a, n)
    return b"\x78\x9c" + b"".join(b for b, _, _ in blocks) + struct.pack(">I", adler)


def _adler32_combine(a1: int, a2: int, n2: int) -> int:
    """The Adler-32 of two byte strings joined, from each one's (zlib's adler32_combine)."""
    BASE = 65521
    rem = n2 % BASE
    s1 = ((a1 & 0xFFFF) + (a2 & 0xFFFF) + BASE - 1) % BASE
    s2 = ((a1 >> 16) + (a2 >> 16) + rem * (a1 & 0xFFFF) + BASE - rem) % BASE
    return (s2 << 16) | s1


def write(samples: np.ndarray, colour_type: int, depth: int, palette: bytes = b"", transparency: bytes = b"",
          chunks: list[Chunk] = (), threads: int = 1) -> bytes:
    """A non-interlaced PNG of (H, W, C) samples at `depth`, with the palette (PLTE bytes), a palette
    image's tRNS and the kept chunks in their places; deflated on `threads` threads (same bytes for any)."""
    h, w = samples.shape[:2]
    rows = _pack_rows(samples, depth)
    bpp = max(1, depth * CHANNELS[colour_type] // 8)
    idat = _idat(rows, bpp, threads)
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))]
    out += [_chunk(c.type, c.data) for c in chunks if c.place == BEFORE_PLTE]
    if palette:
        out.append(_chunk(b"PLTE", palette))
    if transparency:
        out.append(_chunk(b"tRNS", transparency))
    out += [_chunk(c.type, c.data) for c in chunks if c.place == BEFORE_IDAT]
    out.append(_chunk(b"IDAT", idat))
    out += [_chunk(c.type, c.data) for c in chunks if c.place == AFTER_IDAT]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
