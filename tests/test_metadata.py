"""Metadata, file attributes and format v4's fields (issue 18): kept verbatim by default, written back
where the output can hold them, refused in one line where it cannot (unless --strip)."""

from __future__ import annotations

import io
import os
import stat
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import smooth_sixteen_bit
from pixzip import api
from pixzip.entropy import lowbits
from pixzip.formats import container, depth, images, metadata, pngio
from pixzip.cli import main
from pixzip.formats.container import FormatError

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def png_with_chunks(rng) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A Pillow PNG with every kind of ancillary chunk the issue names, spliced in by hand."""
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
    before = [(b"iCCP", b"my profile\x00\x00" + zlib.compress(b"\x01" * 200)), (b"gAMA", (45455).to_bytes(4, "big")),
              (b"cHRM", bytes(range(32))), (b"sRGB", b"\x00"), (b"pHYs", bytes(4) + (2835).to_bytes(4, "big") + b"\x01"),
              (b"eXIf", exif_with_orientation(6)[6:]),
              (b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP),
              (b"tEXt", b"Comment\x00hello"), (b"zTXt", b"Title\x00\x00" + zlib.compress(b"a title"))]
    after = [(b"tIME", bytes([7, 234, 12, 5, 16, 20, 0])), (b"tEXt", b"Author\x00someone")]
    chunks = list(pngio.iter_chunks(buf.getvalue(), "x"))
    out = [pngio.SIGNATURE, pngio._chunk(*chunks[0])]
    out += [pngio._chunk(t, p) for t, p in before]
    out += [pngio._chunk(t, p) for t, p in chunks[1:-1]]
    out += [pngio._chunk(t, p) for t, p in after] + [pngio._chunk(b"IEND", b"")]
    return b"".join(out), before + after


def ancillary(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(t, p) for t, p in pngio.iter_chunks(data, "x") if t not in pngio.CRITICAL]


@pytest.fixture
def workdir(tmp_path, tiny_models, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_png_chunks_come_back_verbatim_and_in_place(workdir, rng):
    data, chunks = png_with_chunks(rng)
    Path("m.png").write_bytes(data)
    assert run("compress", "m.png", "-q").exit_code == 0
    info = run("info", "m.png.pxz").stdout
    for name in ("iCCP", "gAMA", "cHRM", "sRGB", "pHYs", "eXIf", "iTXt", "tEXt", "zTXt", "tIME"):
        assert f"PNG {name}" in info
    assert run("decompress", "m.png.pxz", "-o", "back.png").exit_code == 0
    back = Path("back.png").read_bytes()
    assert ancillary(back) == chunks
    types = [t for t, _ in pngio.iter_chunks(back, "x")]
    assert types.index(b"tIME") > types.index(b"IDAT") > types.index(b"pHYs")
    with Image.open("back.png") as im:
        assert im.getexif()[0x0112] == 6 and im.info["gamma"] == pytest.approx(0.45455)


def test_strip_drops_metadata_but_keeps_the_profile(workdir, rng):
    data, _ = png_with_chunks(rng)
    Path("m.png").write_bytes(data)
    assert run("compress", "m.png", "--strip", "-q").exit_code == 0
    assert run("decompress", "m.png.pxz", "-o", "back.png").exit_code == 0
    assert [t for t, _ in ancillary(Path("back.png").read_bytes())] == [b"iCCP"]


def test_an_output_that_cannot_hold_the_metadata_is_refused_unless_stripped(workdir, rng):
    data, _ = png_with_chunks(rng)
    Path("m.png").write_bytes(data)
    assert run("compress", "m.png", "-q").exit_code == 0
    r = run("decompress", "m.png.pxz", "-o", "m.tif")
    assert r.exit_code == 1 and "--strip" in r.stderr and "m.tif" in r.stderr and not Path("m.tif").exists()
    assert len(r.stderr.strip().splitlines()) == 1
    assert run("decompress", "m.png.pxz", "-o", "m.tif", "--strip").exit_code == 0
    with Image.open("m.tif") as im:                 # the profile (from iCCP) is kept even so
        assert im.info["icc_profile"] == b"\x01" * 200
        assert np.array_equal(np.asarray(im), np.asarray(Image.open("m.png")))


def test_jpeg_exif_orientation_and_xmp_survive(workdir, rng):
    buf = io.BytesIO()
    exif = exif_with_orientation(6)
    Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).save(buf, format="JPEG", exif=exif, xmp=XMP)
    Path("o.jpg").write_bytes(buf.getvalue())
    assert run("compress", "o.jpg", "-q").exit_code == 0
    info = run("info", "o.jpg.pxz").stdout
    assert "EXIF" in info and "XMP" in info
    assert run("decompress", "o.jpg.pxz").exit_code == 0        # -> o.jpg.png
    with Image.open("o.jpg.png") as im, Image.open("o.jpg") as src:
        assert im.getexif()[0x0112] == 6
        exif_chunk = dict(ancillary(Path("o.jpg.png").read_bytes()))[b"eXIf"]
        assert exif_chunk == src.info["exif"][6:]      # the same bytes (PNG's eXIf has no "Exif\0\0" prefix)
        xmp = im.info["xmp"]
        assert XMP in (xmp.encode() if isinstance(xmp, str) else xmp)
    assert run("decompress", "o.jpg.pxz", "-o", "o.webp").exit_code == 0
    with Image.open("o.webp") as im:
        assert im.getexif()[0x0112] == 6
    r = run("decompress", "o.jpg.pxz", "-o", "o.bmp")
    assert r.exit_code == 1 and "EXIF" in r.stderr and not Path("o.bmp").exists()


def test_metadata_is_covered_by_the_files_checksum(workdir, rng):
    data, _ = png_with_chunks(rng)
    Path("m.png").write_bytes(data)
    assert run("compress", "m.png", "-q").exit_code == 0
    pxz = bytearray(Path("m.png.pxz").read_bytes())
    at = bytes(pxz).index(b"someone")
    pxz[at] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        container.read_header(bytes(pxz))


def test_metadata_section_is_bounded():
    items = [metadata.Item(metadata.XMP, b"x" * 10)] * 3
    encoded = metadata.encode(items, container._varint)

    Reader = container._reader          # the container's strict reader (formats.varint.Reader)
    assert metadata.decode(Reader(encoded), FormatError) == items
    too_many = container._varint(metadata.MAX_ITEMS + 1)
    with pytest.raises(FormatError, match="metadata"):
        metadata.decode(Reader(too_many), FormatError)
    unknown = container._varint(1) + bytes([9, 0]) + container._varint(1) + b"x"
    with pytest.raises(FormatError, match="metadata"):
        metadata.decode(Reader(unknown), FormatError)


def test_more_metadata_than_a_reader_takes_is_refused_before_coding(workdir, rng):
    """A reader refuses over MAX_ITEMS items or MAX_TOTAL bytes of metadata; the writer must too, or it
    would write a file nothing can read (it did: 5 000 tEXt chunks coded, then "header is corrupted")."""
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).save(buf, format="PNG")
    chunks = list(pngio.iter_chunks(buf.getvalue(), "x"))
    texts = b"".join(pngio._chunk(b"tEXt", b"k%d\x00v" % i) for i in range(metadata.MAX_ITEMS + 1))
    Path("many.png").write_bytes(pngio.SIGNATURE + pngio._chunk(*chunks[0]) + texts
                                 + b"".join(pngio._chunk(t, p) for t, p in chunks[1:]))
    Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).save("fine.png")
    r = run("compress", "many.png", "fine.png")
    assert r.exit_code == 1 and not Path("many.png.pxz").exists() and Path("fine.png.pxz").exists()
    errors = [line for line in r.stderr.splitlines() if line.startswith("pixzip:")]
    assert len(errors) == 1 and "many.png" in errors[0] and "--strip" in errors[0]
    assert run("compress", "many.png", "--strip", "-q").exit_code == 0
    assert run("decompress", "many.png.pxz", "-o", "back.png").exit_code == 0
    big = images.read_image("fine.png", "fine.png")
    big.metadata = [metadata.Item(metadata.XMP, b"x" * (metadata.MAX_TOTAL // 2 + 1))] * 2
    with pytest.raises(api.PixzipError, match="more than a .pxz holds"):
        api.compress(big)
    with pytest.raises(api.PixzipError, match="more than a .pxz holds"):       # the writer's own guard
        metadata.encode(big.metadata, container._varint)


def test_older_versions_refuse_what_they_cannot_hold(tiny_models, rng):
    image = images.ImageData("RGB", 4, 3, [rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)],
                             metadata=[metadata.Item(metadata.EXIF, b"II*\x00")])
    with pytest.raises(api.PixzipError, match="version 3 cannot hold metadata"):
        api.compress(image, version=3)
    deep = images.ImageData("L", 4, 3, [rng.integers(0, 65536, (3, 4, 1)).astype(np.uint16)], depth=16)
    with pytest.raises(api.PixzipError, match="16-bit"):
        api.compress(deep, version=3)


def test_unknown_entropy_stage_is_refused(tiny_models, rng):
    image = images.ImageData("L", 4, 3, [rng.integers(0, 256, (3, 4, 1), dtype=np.uint8)])
    data, _ = api.compress(image, tile=0)
    header, offset = container.read_header(data)
    header.entropy = [5]            # 0 static, 1 adaptive, 2 stored, 3 LZ, 4 adaptive in value space are known
    forged = container.write(header, container.read_streams(data, header, offset))
    with pytest.raises(FormatError, match="entropy stage 5"):
        container.read_header(forged)


@pytest.mark.parametrize("kind", ["noise", "times257", "shifted12", "small", "flat", "scaled12"])
def test_sixteen_bit_planes_round_trip_and_use_their_structure(tiny_models, rng, kind):
    size = (30, 40, 3)
    base = {"noise": rng.integers(0, 65536, size), "times257": rng.integers(0, 256, size) * 257,
            "shifted12": rng.integers(0, 4096, size) << 4, "small": rng.integers(0, 1000, size),
            "flat": np.full(size, 12345),
            # 12-bit data scaled to 16 bits (x 65535/4095): few distinct values, no common zero bits
            "scaled12": np.rint(rng.integers(1000, 1200, size) * (65535 / 4095))}[kind].astype(np.uint16)
    image = images.ImageData("RGBA", 40, 30, [base, base[..., :1].copy()], depth=16)
    data, _ = api.compress(image, tile=0)
    header = container.read_header(data)[0]
    expected = {"noise": depth.Split(0, 0, 8), "times257": depth.Split(1), "shifted12": depth.Split(0, 4, 4),
                "small": depth.Split(0, 0, 2), "flat": depth.Split(2, 0, 0, np.array([12345])),
                "scaled12": depth.Split(2, 0, 0, np.unique(base))}[kind]
    assert header.splits[0] == expected
    back, _ = api.decompress(data)
    assert back.depth == 16 and all(np.array_equal(a, b) for a, b in zip(back.planes, image.planes))


def test_corrupt_low_byte_stream_is_reported(tiny_models, rng):
    image = images.ImageData("L", 40, 30, [rng.integers(0, 65536, (30, 40, 1)).astype(np.uint16)], depth=16)
    data, _ = api.compress(image, tile=0)
    header, offset = container.read_header(data)
    streams = container.read_streams(data, header, offset)
    streams[-1] = streams[-1].copy()
    streams[-1][-5] ^= 0x10000
    forged = container.write(header, streams)
    with pytest.raises(FormatError, match="corrupt"):
        api.decompress(forged)


@pytest.mark.parametrize("shape, layout", [((12, 10), 1), ((96, 128), 2)])
def test_the_low_part_takes_the_smaller_layout_and_both_decode(shape, layout):
    """Layout 2 (tables per gradient and the prediction's position against the bin, after a leading byte 2) is
    smaller on an image of some size, layout 1 (five times fewer tables) on a small one; the encoder keeps the
    smaller, and the decoder reads either."""
    plane = smooth_sixteen_bit(*shape)
    split = depth.choose_split(plane)
    high, low = depth.high_and_low(plane, split)
    both = {k: lowbits.encode(high, low, split.low_bits, (k,)) for k in (1, 2)}
    chosen = lowbits.encode(high, low, split.low_bits)
    assert both[layout].size < both[3 - layout].size and np.array_equal(chosen, both[layout])
    assert (chosen.view(np.uint8)[0] == lowbits.LAYOUT_POSITIONS) == (layout == 2)
    for stream in both.values():
        np.testing.assert_array_equal(lowbits.decode(stream, high, split.low_bits), low)
    bad = both[2].copy()
    bad.view(np.uint8)[0] = 3                            # neither a table flag nor layout 2
    with pytest.raises(ValueError):
        lowbits.decode(bad, high, split.low_bits)


def test_outputs_take_the_sources_permissions_and_time(workdir, rng):
    Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save("a.png")
    os.chmod("a.png", 0o640)
    os.utime("a.png", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    assert run("compress", "a.png", "-q").exit_code == 0
    st = os.stat("a.png.pxz")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 1_500_000_000_123_456_789
    os.chmod("a.png.pxz", 0o604)
    os.utime("a.png.pxz", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    assert run("decompress", "a.png.pxz", "-o", "b.png").exit_code == 0
    st = os.stat("b.png")
    assert stat.S_IMODE(st.st_mode) == 0o604 and st.st_mtime_ns == 1_600_000_000_000_000_000
    # from standard input: a new file's usual permissions (not the temporary file's 0600)
    r = run("compress", "-", "-o", "s.pxz", input=Path("a.png").read_bytes())
    assert r.exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat("s.pxz").st_mode) == 0o666 & ~umask
