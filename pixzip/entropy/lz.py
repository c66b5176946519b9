"""Entropy stage 3: a whole plane's samples, filtered by a simple predictor, compressed with LZMA2.

Why a dictionary coder beside the context-mixing stage: the adaptive stage predicts each sample from
its neighbourhood and has no memory of long repeats, the same glyph all over a screenshot or the rows
of a synthetic ramp repeating with a shift. An LZ77 coder finds them: on the kinds' screenshots LZMA2
codes the palette indices in about half the adaptive stage's bytes, and `gradient.png` (a ramp at a
fractional slope) in a tenth (docs/ADAPTIVE.md, "The LZ stage"). On photographs it is 1.4-1.6x worse,
so the encoder rules it out with a fast probe of bands of rows and keeps it only where it is smaller.

A plane's *mode* byte: bits 0-1 the filter (residual = sample minus the prediction, modulo 256):
0 none, 1 W (PNG's Sub), 2 N (PNG's Up), 3 W + N - NW (both at once); bit 2: the residuals in planar
order (channel, row, column) instead of the samples' order (row, column, channel). Neighbours outside
the plane read as 0. Every filter is undone by wrapping cumulative sums (numpy), so a decoder without
the compiled coder is as fast as with it. The payload is a raw LZMA2 stream (xz's, Python's `lzma`)
whose matches reach back at most MAX_DICT bytes: the decoder's dictionary is the plane's size up to
that, so its memory is bounded whatever the image's size.
"""

from __future__ import annotations

import lzma

import numpy as np

from ..formats.container import LZ_FILTERS as FILTERS, LZ_MODES as MODES, LZ_PLANAR as PLANAR
MIN_SAMPLES = 1 << 12       # smaller planes are not tried: too short for long repeats to pay
_PROBE_BYTES = 1 << 16      # a fast probe compresses about this many bytes of bands of rows spread over the
_PROBE_BAND = 16            # plane (bands of 16 rows), and rules the stage out where that takes more than
_PROBE_MARGIN = 1.0         # this times the same share of the plane's coded bytes
_PICK_BYTES = 1 << 22       # the first rows' bytes (about) the modes are compared on
_EXTREME_BYTES = 1 << 24    # planes up to this many bytes are compressed with xz's -9e, larger ones with -9
MAX_DICT = 1 << 25          # the dictionary at most, both sides (the encoder's memory: about 11x this)


def residuals(plane: np.ndarray, mode: int) -> bytes:
    """The bytes the LZMA2 stream holds: the plane's (h, w, C) uint8 samples minus the filter's
    prediction, modulo 256, in the mode's order."""
    r = np.asarray(plane, dtype=np.uint8)
    if mode & 1:                                    # W, or W + N - NW (the W difference first)
        r = np.diff(r, axis=1, prepend=np.uint8(0))
    if mode & 2:                                    # N
        r = np.diff(r, axis=0, prepend=np.uint8(0))
    if mode & PLANAR:
        r = r.transpose(2, 0, 1)
    return np.ascontiguousarray(r).tobytes()


def samples(data: bytes, shape: tuple[int, int, int], mode: int) -> np.ndarray:
    """Inverse of `residuals` (uint8 arithmetic wraps modulo 256, as the filters did)."""
    h, w, c = shape
    r = np.frombuffer(data, dtype=np.uint8)
    r = r.reshape(c, h, w).transpose(1, 2, 0) if mode & PLANAR else r.reshape(h, w, c)
    if mode & 2:
        r = np.cumsum(r, axis=0, dtype=np.uint8)
    if mode & 1:
        r = np.cumsum(r, axis=1, dtype=np.uint8)
    return np.ascontiguousarray(r, dtype=np.uint8)


def _compress(data: bytes, preset: int, lc: int = 0) -> bytes:
    dict_size = min(MAX_DICT, max(1 << 12, 1 << (max(len(data), 1) - 1).bit_length()))
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": dict_size, "lc": lc, "lp": 0, "pb": 0}])


def probe_rows(plane: np.ndarray) -> np.ndarray:
    """Bands of _PROBE_BAND rows spread evenly over the plane, about _PROBE_BYTES in all (the whole plane
    where it is smaller): a sample of every part of the image, whose bands can repeat one another."""
    h, w, c = plane.shape
    rows = -(-_PROBE_BYTES // (w * c))
    if rows >= h:
        return plane
    starts = np.linspace(0, h - _PROBE_BAND, max(1, rows // _PROBE_BAND)).astype(int)
    return np.concatenate([plane[s:s + _PROBE_BAND] for s in starts])


def _ruled_out(plane: np.ndarray, budget: int) -> bool:
    """The probe: the bands' residuals, compressed fast without and with the plane filter, take more than
    _PROBE_MARGIN times the bands' share of the budget."""
    sample = probe_rows(plane)
    probe = min(len(_compress(residuals(sample, m), 0)) for m in (0, 3))
    return probe > _PROBE_MARGIN * budget * sample.size / plane.size


def encode(plane: np.ndarray, budget: int, hard: bool = True, probe: bool = True) -> tuple[int, bytes] | None:
    """(mode, payload) of the plane under `budget` bytes (the best coding so far), or None where the
    stage does not beat it or the plane has under MIN_SAMPLES samples. Cheap where it cannot (`probe`):
    bands of rows spread over the plane (probe_rows), compressed fast without and with the plane filter,
    must take at most _PROBE_MARGIN times their share of the budget (measured, session 15: the kinds'
    planes the stage won took 0.54-0.68 of their share, every photograph and every plane it lost 1.07 or
    more; 2-12 ms on a 768x512 photo. It misses some wins: a radial gradient's bands took 1.77 where the
    whole plane takes 0.48, since no fast setting or sample sees its far repeats). Then every mode is
    compressed fast (the first rows, about _PICK_BYTES) to pick one, which is compressed hard (`hard`: xz
    -9e with lc 0 and with lc 1, the smaller kept) or once with -9 and lc 0 (4-8x faster, 3-40 % larger)."""
    plane = np.asarray(plane, dtype=np.uint8)
    h, w, c = plane.shape
    if plane.size < MIN_SAMPLES:
        return None
    if probe and _ruled_out(plane, budget):
        return None
    modes = MODES if c > 1 else MODES[:len(FILTERS)]
    head = plane[:max(1, min(h, -(-_PICK_BYTES // (w * c))))]
    fast = {m: len(_compress(residuals(head, m), 1)) for m in modes}
    mode = min(modes, key=lambda m: (fast[m], m))
    data = residuals(plane, mode)
    if hard:
        preset = 9 | lzma.PRESET_EXTREME if len(data) <= _EXTREME_BYTES else 9
        payload = min((_compress(data, preset, lc) for lc in (0, 1)), key=len)
    else:
        payload = _compress(data, 9)
    return (mode, payload) if len(payload) < budget else None


def decode(payload: bytes, shape: tuple[int, int, int], mode: int) -> np.ndarray:
    """The plane (h, w, C) uint8; ValueError unless the payload is one complete LZMA2 stream of exactly
    the plane's bytes (it never inflates more than that)."""
    if mode not in MODES:
        raise ValueError(f"LZ stage mode {mode}")
    size = shape[0] * shape[1] * shape[2]
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW,
                              filters=[{"id": lzma.FILTER_LZMA2, "dict_size": max(1 << 12, min(size, MAX_DICT))}])
    try:
        data = d.decompress(payload, max_length=size + 1)
    except lzma.LZMAError as e:
        raise ValueError(f"LZMA2 stream: {e}") from None
    if len(data) != size or not d.eof or d.unused_data:
        raise ValueError("LZMA2 stream does not hold exactly the plane")
    return samples(data, shape, mode)
