"""Raw LZMA2 streams (xz's, Python's `lzma`, without a container) as the format holds them: the LZ stage's planes
and LZ tiles (entropy/lz.py) and a transform record's packed body (formats/transforms/record.py). One packer and
one bounded inflater for both: the decoder never inflates more than it was asked for, so a small stream cannot
expand into gigabytes, and it refuses anything that is not exactly one complete stream."""

from __future__ import annotations

import lzma

EXTREME = 9 | lzma.PRESET_EXTREME       # xz -9e


def _filters(dict_size: int, **options) -> list[dict]:
    return [{"id": lzma.FILTER_LZMA2, "dict_size": dict_size, **options}]


def pack(data: bytes, dict_size: int, preset: int, lc: int = 0) -> bytes:
    """`data` as one raw LZMA2 stream whose matches reach back at most `dict_size` bytes (lp and pb 0: bytes, not
    words, are the format's symbols)."""
    return lzma.compress(data, lzma.FORMAT_RAW, filters=_filters(dict_size, preset=preset, lc=lc, lp=0, pb=0))


def inflate(stream: bytes, dict_size: int, limit: int, exact: bool = False) -> bytes:
    """The bytes one raw LZMA2 stream holds, at most `limit` (`exact`: exactly `limit`). ValueError, in words
    a caller can pass on, for damaged data, a stream that does not end, bytes after its end, more than `limit`
    or (exact) fewer."""
    d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_filters(dict_size))
    try:
        data = d.decompress(stream, max_length=limit + 1)
    except lzma.LZMAError:
        raise ValueError("bad LZMA2 data") from None
    if len(data) > limit or (exact and len(data) != limit) or not d.eof or d.unused_data:
        raise ValueError("bad LZMA2 framing: not exactly one stream of the bytes expected")
    return data
