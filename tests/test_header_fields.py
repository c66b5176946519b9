"""Every header field of a format-3 file at its extremes: refused in one line (a PixzipError), with
memory bounded by the file's size, never by what a field claims. The files are built here field by
field from docs/FORMAT.md's layout, independently of pixzip's writer (a test of the builder checks it
against a golden file byte for byte), and every one carries correct checksums, so the damage reaches
the parsers and the coder rather than stopping at the CRC."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from pixzip import api
from pixzip.formats.varint import varint
from pixzip.nets import modelfile
from pixzip.errors import PixzipError

GOLDEN = Path(__file__).resolve().parent / "golden"
MAGIC = b"\x89PXZ\r\n\x1a\n"
HUGE = (1 << 63) - 1                        # the largest value a 9-byte varint holds
# Python allocations (numpy's included) while one corrupt file is refused; the files here are < 3 KiB,
# so anything near this bound would mean a field was trusted. Not a timing: the same on a busy machine.
PEAK_BYTES = 16 << 20


def blob(b: bytes) -> bytes:
    return varint(len(b)) + b


@dataclass
class V3File:
    """The fields of a format-3 file, in their order (docs/FORMAT.md)."""
    mode: int = 3
    width: int = 23
    height: int = 19
    tile: int = 8
    models: list = field(default_factory=list)        # [(8-byte id, name bytes)]
    planes: list = field(default_factory=list)        # [(model index, channels)]
    optional: int = 0
    icc: bytes = b""
    palette: tuple = (b"", b"")                       # (palette mode, palette bytes)
    transparency: bytes = b""
    n_streams: int | None = None                      # None: the number of streams given
    words: list = field(default_factory=list)         # every stream's size in 4-byte words but the last
    pixel_crc: int = 0
    model_bits: int = 0
    payload: bytes = b""

    def body(self) -> bytes:
        body = bytearray([self.mode]) + varint(self.width) + varint(self.height) + varint(self.tile)
        body.append(len(self.models))
        for model_id, name in self.models:
            body += model_id + blob(name)
        for model_index, channels in self.planes:
            body += bytes([model_index, channels])
        body.append(self.optional)
        if self.optional & 1:
            body += blob(self.icc)
        if self.optional & 2:
            body += blob(self.palette[0]) + blob(self.palette[1])
        if self.optional & 4:
            body += blob(self.transparency)
        body += varint(len(self.words) + 1 if self.n_streams is None else self.n_streams)
        body += b"".join(varint(w) for w in self.words)
        body += struct.pack("<I", self.pixel_crc) + varint(self.model_bits)
        return bytes(body)

    def encode(self, body: bytes | None = None) -> bytes:
        """The file, with this header body or another one (an edited copy of it)."""
        body = self.body() if body is None else body
        head = MAGIC + bytes([3, 0]) + varint(len(body)) + bytes(body)
        return head + struct.pack("<I", zlib.crc32(self.payload, zlib.crc32(head))) + self.payload


def golden_rgb() -> V3File:
    """tests/golden/v3/rgb.pxz rebuilt field by field (checked below)."""
    from pixzip.formats import container
    data = (GOLDEN / "v3" / "rgb.pxz").read_bytes()
    h, offset = container.read_header(data)
    return V3File(width=h.width, height=h.height, tile=h.tile,
                  models=[(bytes.fromhex(m.id), b"golden-rgb") for m in h.models], planes=list(h.planes),
                  words=[s // 4 for s in h.stream_sizes[:-1]], pixel_crc=h.pixel_crc,
                  model_bits=int(h.model_bits), payload=data[offset:])


MODELS = [modelfile.load(GOLDEN / f) for f in ("golden-rgb.pxm", "golden-gray.pxm", "golden-rgb16.pxm")]


def refused(data: bytes) -> str:
    """Decode and return the one-line refusal; fails if it decodes or if memory grows with a claim."""
    tracemalloc.start()
    try:
        with pytest.raises(PixzipError) as e:
            api.decompress(data, MODELS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{peak} bytes allocated to refuse a {len(data)}-byte file"
    message = str(e.value)
    assert message and "\n" not in message
    return message


def test_the_builder_writes_the_golden_file():
    assert golden_rgb().encode() == (GOLDEN / "v3" / "rgb.pxz").read_bytes()
    image, _ = api.decompress(golden_rgb().encode(), MODELS)
    assert image.width == 23


BAD_FIELDS = {
    "mode 0": dict(mode=0), "mode 255": dict(mode=255),
    "width 0": dict(width=0), "width 2^31": dict(width=1 << 31), "width huge": dict(width=HUGE),
    "height 0": dict(height=0), "height huge": dict(height=HUGE),
    "both 2^30": dict(width=1 << 30, height=1 << 30, tile=0, words=[]),   # over --max-pixels, one stream
    "tile 65536": dict(tile=1 << 16), "tile huge": dict(tile=HUGE), "tile 3": dict(tile=3),
    "tile 1": dict(tile=1),
    "no model": dict(models=[]),
    "model name 2^32": "name", "plane model index 9": dict(planes=[(9, 3)]),
    "plane channels 0": dict(planes=[(0, 0)]), "plane channels 255": dict(planes=[(0, 255)]),
    "optional unknown bit": dict(optional=8),
    "icc claims huge": dict(optional=1, icc=b"x"),          # patched below: length HUGE
    "palette claims huge": dict(optional=2, palette=(b"RGB", b"x")),
    "transparency claims huge": dict(optional=4, transparency=b"x"),
    "streams 0": dict(n_streams=0), "streams huge": dict(n_streams=HUGE),
    "streams one more": "more streams", "streams one fewer": "fewer streams",
    "stream words huge": "huge words", "stream words short": "short words",
    "pixel crc": dict(pixel_crc=12345),
}


def corrupt(name: str) -> bytes:
    f = golden_rgb()
    change = BAD_FIELDS[name]
    if change == "name":                      # a name whose length says 2^32 bytes
        f.models = [(f.models[0][0], b"x")]
        return f.encode(f.body().replace(b"\x01x", varint(1 << 32) + b"x", 1))
    if change == "more streams":
        f.n_streams = len(f.words) + 2
    elif change == "fewer streams":
        f.words, f.n_streams = f.words[:-1], len(f.words)
    elif change == "huge words":
        f.words = [HUGE] + f.words[1:]
    elif change == "short words":
        f.words = [1] * len(f.words)
    else:
        f = replace(f, **change)
    if name.endswith("claims huge"):          # a blob whose length says far more than the file holds
        assert f.body().count(b"\x01x") == 1
        return f.encode(f.body().replace(b"\x01x", varint(HUGE) + b"x"))
    return f.encode()


@pytest.mark.parametrize("name", sorted(BAD_FIELDS))
def test_each_header_field_at_its_extremes_is_refused(name):
    refused(corrupt(name))


def test_declared_pixels_are_checked_against_the_limit_before_decoding():
    message = refused(corrupt("both 2^30"))
    assert "limit" in message


def test_the_reported_model_bits_are_only_reported():
    """The model's ideal bits are for `pixzip info` alone: any value decodes the same pixels."""
    f = replace(golden_rgb(), model_bits=HUGE)
    image, header = api.decompress(f.encode(), MODELS)
    assert header.model_bits == float(HUGE)
    assert image.pixel_bytes() == api.decompress(golden_rgb().encode(), MODELS)[0].pixel_bytes()
