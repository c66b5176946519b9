"""Bad input: each case is one clear line on stderr, exit 1, nothing written, no traceback."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixzip.nets import modelfile
from pixzip.formats import container
from pixzip.cli import main


@pytest.fixture
def good(tmp_path, tiny_models, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(rng.integers(0, 256, (10, 11, 3), dtype=np.uint8)).save("img.png")
    assert CliRunner().invoke(main, ["compress", "img.png", "-q"]).exit_code == 0
    return Path("img.png.pxz").read_bytes()


def fails(args, expect: str, input=None):
    before = set(Path(".").iterdir())
    r = CliRunner().invoke(main, args, input=input)
    assert r.exit_code == 1, (r.exit_code, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixzip: ") and expect in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.exception is None or isinstance(r.exception, SystemExit)
    assert set(Path(".").iterdir()) == before, "something was written"
    return lines[0]


def write_and_fail(name, data, expect):
    Path(name).write_bytes(data)
    return fails(["decompress", name], expect)


def rewrite_header_crc(data: bytes) -> bytes:
    (body_len,) = struct.unpack("<I", data[12:16])
    end = 16 + body_len
    return data[:end] + struct.pack("<I", zlib.crc32(data[:end])) + data[end + 4:]


def test_not_an_image(good):
    Path("junk.png").write_bytes(b"\x00\x01garbage")
    fails(["compress", "junk.png"], "not an image")


def test_missing_input(good):
    fails(["compress", "nope.png"], "no such file")


def test_unsupported_modes(good):
    Image.fromarray(np.zeros((4, 4), dtype=np.int32)).save("deep.tif")
    fails(["compress", "deep.tif"], "not supported")
    Image.new("CMYK", (4, 4)).save("cmyk.tif")
    fails(["compress", "cmyk.tif"], "not supported")
    Image.new("F", (4, 4)).save("float.tif")
    fails(["compress", "float.tif"], "not supported")


@pytest.mark.parametrize("name", ["anim.gif", "anim.png", "pages.tif"])
def test_multi_frame_images_are_refused(good, name):
    """Coding the first frame alone would lose the others without a word: refused, nothing written."""
    frames = [Image.new("RGB", (6, 5), (40 * k, 0, 0)) for k in range(3)]
    frames[0].save(name, save_all=True, append_images=frames[1:])
    assert Image.open(name).n_frames == 3
    fails(["compress", name], "3 frames")
    Image.new("RGB", (6, 5)).save("still.gif")                   # one frame: coded as ever
    assert CliRunner().invoke(main, ["compress", "still.gif", "-q"]).exit_code == 0


def test_truncated(good):
    for cut in (3, 20, len(good) // 2, len(good) - 1):
        write_and_fail("t.pxz", good[:cut], "truncated")


def test_flipped_bytes_in_header(good):
    for pos in (17, 20, 30):
        data = bytearray(good)
        data[pos] ^= 0x10
        write_and_fail("h.pxz", bytes(data), "corrupted")


def test_flipped_bytes_in_payload(good):
    data = bytearray(good)
    data[-5] ^= 0x01
    write_and_fail("p.pxz", bytes(data), "corrupted")


def rebuild(data: bytes, edit) -> bytes:
    """Parse a good file, let `edit` change the header or payload, and write it with valid checksums."""
    h, offset = container.read_header(data)
    streams = container.read_streams(data, h, offset)
    streams = edit(h, streams) or streams
    return container.write(h, streams)


def test_payload_corruption_behind_valid_checksums_is_caught_by_pixel_crc(good):
    """Even with the payload checksum recomputed, the pixel checksum refuses wrong pixels."""
    def flip(h, streams):
        streams[0] = streams[0].copy()
        streams[0][0] ^= 0x00550000
    write_and_fail("forged.pxz", rebuild(good, flip), "corrupted")


def test_wrong_magic(good):
    write_and_fail("m.pxz", b"GIF89a" + good[6:], "not a pixzip file")


def test_future_version(good):
    data = bytearray(good)
    data[8:10] = struct.pack("<H", 9)
    msg = write_and_fail("v.pxz", rewrite_header_crc(bytes(data)), "version 9")
    assert "upgrade" in msg


def test_trailing_garbage(good):
    write_and_fail("g.pxz", good + b"xyz!", "checksum mismatch")


def test_file_made_with_another_model(good, tiny_models):
    """A file naming an installed model whose identity differs is refused before decoding."""
    r = CliRunner().invoke(main, ["compress", "img.png", "-o", "other.pxz", "-q", "--format-version", "3", "-m",
                                  str(tiny_models / "other-rgb.pxm")])      # v3: noise coded, not stored
    assert r.exit_code == 0

    def rename(h, streams):
        h.models[0].name = "pcnn-rgb-v1"
    msg = write_and_fail("renamed.pxz", rebuild(Path("other.pxz").read_bytes(), rename), "pcnn-rgb-v1")
    assert "needs model" in msg and "id" in msg


def test_file_needing_uninstalled_model(good, tiny_models, tmp_path, monkeypatch):
    r = CliRunner().invoke(main, ["compress", "img.png", "-o", "o.pxz", "-q", "--format-version", "3", "-m",
                                  str(tiny_models / "other-rgb.pxm")])      # v3: noise coded, not stored
    assert r.exit_code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PIXZIP_MODELS", str(empty))
    fails(["decompress", "o.pxz", "-o", "o.png"], "needs model 'other-rgb'")
    r = CliRunner().invoke(main, ["decompress", "o.pxz", "-o", "o.png", "-m", str(tiny_models / "other-rgb.pxm")])
    assert r.exit_code == 0


def test_existing_output(good):
    Path("img.png").rename("keep.png")
    Path("img.png").write_bytes(b"do not touch")
    fails(["decompress", "img.png.pxz"], "already exists")
    assert Path("img.png").read_bytes() == b"do not touch"


def test_huge_dimensions_refused_before_decoding(good):
    def grow(h, streams):
        h.width = h.height = 200000
        h.tile = 0
        return streams[:1]
    write_and_fail("huge.pxz", rebuild(good, grow), "over the limit")


def test_tampered_model_file_is_rejected(good, tiny_models, tmp_path):
    data = bytearray((tiny_models / "other-rgb.pxm").read_bytes())
    data[-10] ^= 0x01
    p = tmp_path / "tampered.pxm"
    p.write_bytes(bytes(data))
    with pytest.raises(Exception, match="hash mismatch"):
        modelfile.load(p)
    r = CliRunner().invoke(main, ["compress", "img.png", "-o", "z.pxz", "-m", str(p)])
    assert r.exit_code == 1 and "hash mismatch" in r.stderr


def test_model_file_is_not_pickle(tiny_models):
    data = (tiny_models / "other-rgb.pxm").read_bytes()
    assert data[:8] == modelfile.MAGIC and b"pickle" not in data[:2000]


def test_decompression_bomb_input_is_refused(good):
    """A PNG whose header claims 10^10 pixels is refused by the pixel limit, before any allocation."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    Path("bomb.png").write_bytes(png)
    fails(["compress", "bomb.png"], "larger than the limit")
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save("small.png")
    fails(["compress", "small.png", "--max-pixels", "100"], "larger than the limit")


def test_dimensions_out_of_proportion_to_the_payload_are_refused(good):
    """Under the pixel limit but far beyond what the payload could code: refused before decoding, so
    work stays proportional to the file's real size."""
    def grow(h, streams):
        h.width, h.height, h.tile = 12000, 12000, 0
        h.stream_sizes = h.stream_sizes[:1]
        return streams[:1]
    assert CliRunner().invoke(main, ["compress", "img.png", "-o", "v3.pxz", "-q", "--format-version", "3"]).exit_code == 0
    write_and_fail("inflated.pxz", rebuild(Path("v3.pxz").read_bytes(), grow), "too short")   # a coded plane
    write_and_fail("inflated4.pxz", rebuild(good, grow), "stored plane")     # v4 stores noise: its exact length


def test_unwritable_destination_is_one_line(good, tmp_path):
    fails(["compress", "img.png", "-o", "no/such/dir/x.pxz"], "cannot write")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        fails(["compress", "img.png", "-o", str(ro / "x.pxz")], "cannot write")
    finally:
        ro.chmod(0o700)
