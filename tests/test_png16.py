"""16-bit PNG reading: the compiled row unfiltering (csrc/png.c) against pypng, the reference, on every
filter type, colour type and odd size; interlaced files through pypng; corrupt image data refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import png
import pytest

from pixzip.errors import PixzipError
from pixzip.formats import clib, pngio

needs_c = pytest.mark.skipif(clib.library() is None or not hasattr(clib.library(), "pz_png_unfilter"),
                             reason="needs the compiled library")


def filtered(rows: np.ndarray, bpp: int, kinds: list[int]) -> bytes:
    """Rows (H, row bytes) uint8 filtered by the PNG specification's definitions, row r with kinds[r]."""
    x = rows.astype(np.int32)
    out = []
    for r, kind in enumerate(kinds):
        a = np.concatenate([np.zeros(bpp, np.int32), x[r, :-bpp]])
        b = x[r - 1] if r else np.zeros_like(x[r])
        c = np.concatenate([np.zeros(bpp, np.int32), b[:-bpp]])
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        predictor = [0 * a, a, b, (a + b) // 2, np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))][kind]
        out.append(bytes([kind]) + ((x[r] - predictor) & 0xFF).astype(np.uint8).tobytes())
    return b"".join(out)


def png16(samples: np.ndarray, kinds: list[int] | None = None, raw: bytes | None = None) -> bytes:
    h, w, c = samples.shape
    rows = samples.astype(">u2").view(np.uint8).reshape(h, -1)
    body = raw if raw is not None else filtered(rows, 2 * c, kinds or [r % 5 for r in range(h)])
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return (pngio.SIGNATURE + pngio._chunk(b"IHDR", ihdr) + pngio._chunk(b"IDAT", zlib.compress(body))
            + pngio._chunk(b"IEND", b""))


@needs_c
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 5), (13, 33)])
@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4, None])
def test_every_filter_unfilters_as_pypng_does(rng, channels, shape, kind):
    h, w = shape
    samples = rng.integers(0, 65536, (h, w, channels)).astype(np.uint16)
    if kind is None:                                    # a smooth image, every row its own filter
        samples = (np.cumsum(np.cumsum(samples % 97, 0), 1) % 65536).astype(np.uint16)
    data = png16(samples, None if kind is None else [kind] * h)
    got = pngio.read_pixels16(data, "x.png")
    assert got.dtype == np.uint16 and np.array_equal(got, samples)
    assert np.array_equal(got, pngio._pypng_pixels16(data, "x.png"))


def test_an_interlaced_file_is_read_by_pypng(rng):
    samples = rng.integers(0, 65536, (11, 13, 3)).astype(np.uint16)
    buf = io.BytesIO()
    png.Writer(13, 11, greyscale=False, bitdepth=16, interlace=True).write(buf, samples.reshape(11, -1))
    assert np.array_equal(pngio.read_pixels16(buf.getvalue(), "i.png"), samples)


@needs_c
def test_corrupt_image_data_is_refused(rng):
    samples = rng.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    rows = samples.astype(">u2").view(np.uint8).reshape(4, -1)
    good = filtered(rows, 6, [1, 2, 3, 4])
    for raw, why in ((bytes([5]) + good[1:], "filter type"), (good[:-1], "wrong length"), (good + b"\0", "wrong length")):
        with pytest.raises(PixzipError, match=why):
            pngio.read_pixels16(png16(samples, raw=raw), "bad.png")
