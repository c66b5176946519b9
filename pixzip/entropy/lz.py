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

import numpy as np

from ..formats import lzma2
from ..formats.threads import each as _each
from ..formats.container import LZ_FILTERS as FILTERS, LZ_MODES as MODES, LZ_PLANAR as PLANAR
MIN_SAMPLES = 1 << 12       # smaller planes are not tried: too short for long repeats to pay
_PROBE_BYTES = 1 << 16      # a fast probe compresses about this many bytes of bands of rows spread over the
_PROBE_BAND = 16            # plane (bands of 16 rows), and rules the stage out where that takes more than
_PROBE_MARGIN = 1.0         # this times the same share of the plane's coded bytes
_LOOK_AGAIN_BITS = 0.75     # a plane coded in under this many bits a sample that the probe rules out is looked at
_LOOK_AGAIN_MARGIN = 1.5    # again, whole (xz -1, a mode picked on the bands): ruled out over this times its budget
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
    return lzma2.pack(data, min(MAX_DICT, max(1 << 12, 1 << (max(len(data), 1) - 1).bit_length())), preset, lc)


def probe_rows(plane: np.ndarray) -> np.ndarray:
    """Bands of _PROBE_BAND rows spread evenly over the plane, about _PROBE_BYTES in all (the whole plane
    where it is smaller): a sample of every part of the image, whose bands can repeat one another."""
    h, w, c = plane.shape
    rows = -(-_PROBE_BYTES // (w * c))
    if rows >= h:
        return plane
    starts = np.linspace(0, h - _PROBE_BAND, max(1, rows // _PROBE_BAND)).astype(int)
    return np.concatenate([plane[s:s + _PROBE_BAND] for s in starts])


def _ruled_out(plane: np.ndarray, budget: int, threads: int = 1) -> bool:
    """The probe: the bands' residuals, compressed fast without and with the plane filter, take more than
    _PROBE_MARGIN times the bands' share of the budget; and where the budget is under _LOOK_AGAIN_BITS a
    sample (synthetic planes, and a photograph's smooth sky), the look again rules it out too."""
    sample = probe_rows(plane)
    probe = min(len(_compress(residuals(sample, m), 0)) for m in (0, 3))
    if probe <= _PROBE_MARGIN * budget * sample.size / plane.size:
        return False
    return 8 * budget >= _LOOK_AGAIN_BITS * plane.size or _ruled_out_whole(plane, sample, budget, threads)


def _ruled_out_whole(plane: np.ndarray, sample: np.ndarray, budget: int, threads: int = 1) -> bool:
    """The look again: the whole plane, unfiltered and in the mode that compresses the bands best (xz -1; the
    bands do not see far repeats of the unfiltered samples), compressed with xz -1, takes more than
    _LOOK_AGAIN_MARGIN times the budget either way. Gradients repeat their rows far apart and shifted: the bands'
    fast probe took 1.7-11x its share on six synthetic gradients where the whole plane takes 0.26-0.86 of the
    budget; xz -1 of the whole plane took 0.75-1.40x where the LZ stage wins and 1.70x or more where it loses (a
    dithered radial gradient, a conic sweep, a defocused photograph, a photograph's smooth sky at 0.62 bits a
    sample), in 11-130 ms a plane of 0.2-1.2 MB (docs/ADAPTIVE.md, "The LZ stage")."""
    modes = list(dict.fromkeys((0, _fastest_mode(sample, threads))))
    return all(size > _LOOK_AGAIN_MARGIN * budget
               for size in _each(lambda m: len(_compress(residuals(plane, m), 1)), modes, threads))


def _fastest_mode(rows: np.ndarray, threads: int = 1) -> int:
    """The mode whose residuals of `rows` xz -1 compresses smallest (ties: the lower mode)."""
    modes = MODES if rows.shape[2] > 1 else MODES[:len(FILTERS)]
    fast = dict(zip(modes, _each(lambda m: len(_compress(residuals(rows, m), 1)), modes, threads)))
    return min(modes, key=lambda m: (fast[m], m))


def encode(plane: np.ndarray, budget: int, hard: bool = True, probe: bool = True,
           threads: int = 1) -> tuple[int, bytes] | None:
    """(mode, payload) of the plane under `budget` bytes (the best coding so far), or None where the
    stage does not beat it or the plane has under MIN_SAMPLES samples. Cheap where it cannot (`probe`):
    bands of rows spread over the plane (probe_rows), compressed fast without and with the plane filter,
    must take at most _PROBE_MARGIN times their share of the budget (measured, session 15: the kinds'
    planes the stage won took 0.54-0.68 of their share, every photograph and every plane it lost 1.07 or
    more; 2-12 ms on a 768x512 photo. It misses some wins: a radial gradient's bands took 1.77 where the
    whole plane takes 0.48, since no fast setting or sample sees its far repeats). Then every mode is
    compressed fast (the first rows, about _PICK_BYTES) to pick one, which is compressed hard (`hard`: xz
    -9e with lc 0 and with lc 1, the smaller kept) or once with -9 and lc 0 (4-8x faster, 3-40 % larger).
    `threads`: the alternatives are compressed in up to that many threads (the same bytes)."""
    plane = np.asarray(plane, dtype=np.uint8)
    h, w, c = plane.shape
    if plane.size < MIN_SAMPLES:
        return None
    if probe and _ruled_out(plane, budget, threads):
        return None
    mode = _fastest_mode(plane[:max(1, min(h, -(-_PICK_BYTES // (w * c))))], threads)
    payload = _compress_best(residuals(plane, mode), hard, threads)
    return (mode, payload) if len(payload) < budget else None


def _compress_best(data: bytes, hard: bool, threads: int = 1) -> bytes:
    """xz -9e with lc 0 and with lc 1, the smaller (`hard`; -9 over _EXTREME_BYTES), else -9 with lc 0 once."""
    if not hard:
        return _compress(data, 9)
    preset = lzma2.EXTREME if len(data) <= _EXTREME_BYTES else 9
    return min(_each(lambda lc: _compress(data, preset, lc), (0, 1), threads), key=len)


def decode(payload: bytes, shape: tuple[int, int, int], mode: int) -> np.ndarray:
    """The plane (h, w, C) uint8; ValueError unless the payload is one complete LZMA2 stream of exactly
    the plane's bytes (it never inflates more than that)."""
    if mode not in MODES:
        raise ValueError(f"LZ stage mode {mode}")
    return samples(_inflate(payload, shape[0] * shape[1] * shape[2]), shape, mode)


def _inflate(payload: bytes, size: int) -> bytes:
    """The `size` bytes a raw LZMA2 stream holds; ValueError unless it is one complete stream of exactly that
    many (it never inflates more)."""
    return lzma2.inflate(payload, max(1 << 12, min(size, MAX_DICT)), size, exact=True)


# -- LZ tiles: the tiles of an adaptive plane that one LZMA2 stream codes (docs/FORMAT.md, stages 1 and 4) ----
# A screenshot with a photograph in it is text in some tiles, where the dictionary coder takes a fraction of the
# context-mixing stage's bytes, and photograph in others, where it loses; a plane coded whole by one stage or
# the other pays the dearer one somewhere. So the adaptive stage's tiles may hand some of their samples to one
# LZMA2 stream, shared so that their repeats of one another still pay.
_TILE_MAX_BITS = 2.0        # tiles the adaptive stage codes in more bits per sample are not tried (photographs)
_TILE_HEAD_BYTES = 1 << 15  # a tile's first rows, about this many bytes: its quick probe
_TILE_HEAD_MARGIN = 1.5     # the quick probe may take this times its share of the tile's budget
_TILE_HEAD_FROM_BITS = 0.5  # tiles the stage codes in fewer bits a sample skip it (their whole test is quick)


def tile_candidates(tiles: list[np.ndarray], budgets: list[int]) -> list[int]:
    """The tiles (indices) that the adaptive stage codes in at most _TILE_MAX_BITS per sample and that xz -1
    without or with the plane filter compresses to fewer bytes than their budget (their framed bytes today).
    The whole tile, not bands spread over it: a 16-row band of text shows none of the repeats that make LZ win
    there (measured: 1 020 bytes for a band whose tile takes 5 091, a third of the stage's 14 728). Before that,
    a quick probe of the tile's first rows (xz -0, both filters) must take under _TILE_HEAD_MARGIN times their
    share of the budget: measured (session 22) 1.8-2.7 on the tiles of smooth photographs (0.6-1.2 bits a sample,
    under the gate), 0.5-0.95 on every text tile LZ won; it costs 1-6 ms where the whole tile's test took 11-36.
    Nearly empty tiles (under _TILE_HEAD_FROM_BITS) skip it: their content may lie below the first rows (a
    screenshot's tile of a few lines of text: 2.3 times its share there, the whole tile 0.86 of its budget), and
    their whole test takes 1-2 ms."""
    return [n for n, (tile, budget) in enumerate(zip(tiles, budgets))
            if 8 * budget <= _TILE_MAX_BITS * tile.size and _quick_probe_passes(tile, budget)
            and any(len(_compress(residuals(tile, m), 1)) < budget for m in (0, 3))]


def _quick_probe_passes(tile: np.ndarray, budget: int) -> bool:
    """Whether the tile's first rows (xz -0, without and with the plane filter) take under _TILE_HEAD_MARGIN
    times their share of the budget; a nearly empty tile passes untested."""
    if 8 * budget < _TILE_HEAD_FROM_BITS * tile.size:
        return True
    head = tile[:max(1, _TILE_HEAD_BYTES // (tile.shape[1] * tile.shape[2]))]
    quick = min(len(_compress(residuals(head, m), 0)) for m in (0, 3))
    return quick < _TILE_HEAD_MARGIN * budget * head.size / tile.size


def encode_tiles(tiles: list[np.ndarray], chosen: list[int], hard: bool = True) -> bytes:
    """One stream for the `chosen` tiles (h, w, C uint8 each): a mode byte (as a plane's), then raw LZMA2 of
    their residuals (each tile filtered on its own, neighbours outside it 0) one tile after another, in
    `chosen`'s order. The mode: the one whose fast compression of the first _PICK_BYTES is smallest (the leading
    tiles that hold them are the only ones filtered for that)."""
    channels = tiles[chosen[0]].shape[2]
    modes = MODES if channels > 1 else MODES[:len(FILTERS)]
    leading = chosen[:1 + int(np.searchsorted(np.cumsum([tiles[n].size for n in chosen]), _PICK_BYTES))]

    def joined(mode: int, which: list[int]) -> bytes:
        return b"".join(residuals(tiles[n], mode) for n in which)

    fast = {m: len(_compress(joined(m, leading)[:_PICK_BYTES], 1)) for m in modes}
    mode = min(modes, key=lambda m: (fast[m], m))
    return bytes([mode]) + _compress_best(joined(mode, chosen), hard)


def decode_tiles(payload: bytes, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """Inverse of encode_tiles, given the tiles' shapes in order; ValueError for a bad mode or a stream that is
    not exactly their samples."""
    if not payload or payload[0] not in MODES:
        raise ValueError("LZ tiles: no mode, or an unknown one")
    mode, sizes = payload[0], [h * w * c for h, w, c in shapes]
    data = _inflate(payload[1:], sum(sizes))
    ends = np.cumsum(sizes)
    return [samples(data[e - n:e], shape, mode) for n, e, shape in zip(sizes, ends, shapes)]
