"""A TIFF's own tags (resolution, orientation, artist, EXIF and GPS directories...) and a BMP's resolution
survive compress and decompress; the stored raster is kept as the file stores it. Judged with tifffile and
the BMP header's bytes, not with the path that read the input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image, TiffImagePlugin

from pixzip.cli import main
from pixzip.formats import images, metadata, pngio, tifftags

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def workdir(tmp_path, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def scan_exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif.update({315: "Artist X", 274: orientation, 282: TiffImagePlugin.IFDRational(300, 1),
                 283: TiffImagePlugin.IFDRational(300, 1), 296: 2, 305: "ScanSoft", 270: "a scan",
                 33432: "(c) nobody"})
    exif.get_ifd(tifftags.EXIF_IFD)[0x9003] = "2020:01:01 10:00:00"
    exif.get_ifd(tifftags.GPS_IFD)[1] = "N"
    return exif


def tags_of(path: str) -> dict:
    """The descriptive tags of a TIFF as tifffile reads them (an independent reader), with the EXIF
    and GPS directories' contents."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        out = {t.code: t.value for t in page.tags.values() if t.code not in tifftags.LAYOUT_TAGS - {700}
               and t.code not in tifftags.SUB_DIRECTORIES}
        for code in tifftags.SUB_DIRECTORIES:
            if code in page.tags:
                out[code] = dict(page.tags[code].value)
    return out


def test_a_tiffs_tags_xmp_and_raster_come_back(workdir, rng):
    raw = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = scan_exif()
    exif[700] = XMP
    Image.fromarray(raw).save("s.tif", exif=exif.tobytes())    # (libtiff cannot write the EXIF directory)
    assert run("compress", "s.tif", "-q").exit_code == 0
    info = run("info", "s.tif.pxz").stdout
    assert "EXIF" in info and "XMP" in info
    Path("s.tif").rename("source.tif")
    assert run("decompress", "s.tif.pxz").exit_code == 0               # -> s.tif, the source's format
    assert np.array_equal(tifffile.imread("s.tif"), raw)                # the raster as stored: not turned
    expected = tags_of("source.tif")
    assert expected[274] == 6 and expected[282] == (300, 1) and 0x8825 in expected and 700 in expected
    assert tags_of("s.tif") == expected
    assert run("decompress", "s.tif.pxz", "-o", "s.png").exit_code == 0  # EXIF as eXIf, XMP as iTXt
    with Image.open("s.png") as im:
        assert im.getexif()[274] == 6 and im.getexif()[315] == "Artist X"
        assert np.array_equal(np.asarray(im), raw)
    r = run("decompress", "s.tif.pxz", "-o", "s.bmp")
    assert r.exit_code == 1 and "EXIF" in r.stderr and not Path("s.bmp").exists()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_a_turned_tiff_keeps_its_stored_raster_and_orientation(rng, orientation, compression):
    """Pillow turns a TIFF's raster by its Orientation tag as it loads it (compressed or not); pixzip keeps
    the raster as stored, with the tag, as it does a JPEG's."""
    raw = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif.update({274: orientation, 315: "Artist X"})
    Image.fromarray(raw).save(buf, "TIFF", exif=exif.tobytes(), **({"compression": compression} if compression else {}))
    d = images.read_image(buf.getvalue(), "t.tif")
    assert (d.width, d.height) == (7, 5) and np.array_equal(d.planes[0], raw)
    assert tifftags.orientation(d.metadata[0].data) == orientation


def test_sixteen_bit_tiff_tags_and_directories_come_back(workdir, rng):
    raw = rng.integers(0, 65536, (4, 6, 3)).astype(np.uint16)
    tifffile.imwrite("d.tif", raw, photometric="rgb", resolution=((600, 1), (600, 1)), resolutionunit=2,
                     metadata=None, software="Scanner 1", description="sixteen",
                     extratags=[(315, 2, 0, "Someone", True), (33432, 2, 0, "CC-BY", True), (700, 1, 0, XMP, True)])
    assert run("compress", "d.tif", "-q").exit_code == 0
    assert run("decompress", "d.tif.pxz", "-o", "back.tif").exit_code == 0
    assert np.array_equal(tifffile.imread("back.tif"), raw)
    assert tags_of("back.tif") == tags_of("d.tif")
    # EXIF and GPS directories, which tifffile does not write: appended, and the pointers set to them
    Image.fromarray(raw[..., 0].astype(np.uint8)).save("e.tif", exif=scan_exif().tobytes())
    e = images.read_image("e.tif", "e.tif")
    deep = images.ImageData("RGB", 6, 4, [raw], depth=16, metadata=e.metadata)
    Path("deep.tif").write_bytes(images.encode(deep, "TIFF"))
    assert np.array_equal(tifffile.imread("deep.tif"), raw)
    expected = tags_of("e.tif")
    assert expected[0x8769] and expected[0x8825] and tags_of("deep.tif") == expected
    with tifffile.TiffFile("deep.tif") as tif:                # the directory's entries in ascending order
        codes = [t.code for t in tif.pages[0].tags.values()]
    assert codes == sorted(codes)


def bmp_resolution(data: bytes) -> tuple[int, int]:
    return tuple(int.from_bytes(data[at:at + 4], "little", signed=True) for at in (38, 42))


def test_a_bmps_resolution_comes_back_and_goes_to_png_and_tiff(workdir, rng):
    raw = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(raw).save("r.bmp", dpi=(300, 300))
    ppm = bmp_resolution(Path("r.bmp").read_bytes())
    assert ppm == (11811, 11811)
    assert run("compress", "r.bmp", "-q").exit_code == 0
    Path("r.bmp").rename("source.bmp")
    assert run("decompress", "r.bmp.pxz").exit_code == 0
    back = Path("r.bmp").read_bytes()
    assert bmp_resolution(back) == ppm and np.array_equal(np.asarray(Image.open("r.bmp")), raw)
    assert run("decompress", "r.bmp.pxz", "-o", "r.png").exit_code == 0
    phys = dict(pngio.iter_chunks(Path("r.png").read_bytes(), "r.png"))[b"pHYs"]
    assert phys == (11811).to_bytes(4, "big") * 2 + b"\x01"
    assert run("decompress", "r.bmp.pxz", "-o", "r.tif").exit_code == 0
    assert {k: tags_of("r.tif")[k] for k in (282, 283, 296)} == {282: (11811, 100), 283: (11811, 100), 296: 3}
    r = run("decompress", "r.bmp.pxz", "-o", "r.webp")            # WebP has no resolution
    assert r.exit_code == 1 and "pHYs" in r.stderr and "--strip" in r.stderr and not Path("r.webp").exists()


def test_a_bmp_without_a_resolution_stays_without(workdir, rng):
    Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).save("z.bmp", dpi=(0, 0))
    assert bmp_resolution(Path("z.bmp").read_bytes()) == (0, 0)
    assert metadata.from_bmp(Path("z.bmp").read_bytes()) == []
    assert run("compress", "z.bmp", "-q").exit_code == 0
    assert run("decompress", "z.bmp.pxz", "-o", "back.bmp").exit_code == 0
    assert bmp_resolution(Path("back.bmp").read_bytes()) == (0, 0)     # not Pillow's default 96 dpi
    assert run("decompress", "z.bmp.pxz", "-o", "back.webp").exit_code == 0


def test_a_unitless_phys_goes_to_tiff_but_not_to_bmp(workdir, rng):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).save(buf, "PNG")
    chunks = list(pngio.iter_chunks(buf.getvalue(), "x"))
    aspect = (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x00"
    Path("a.png").write_bytes(pngio.SIGNATURE + pngio._chunk(*chunks[0]) + pngio._chunk(b"pHYs", aspect)
                              + b"".join(pngio._chunk(t, p) for t, p in chunks[1:]))
    assert run("compress", "a.png", "-q").exit_code == 0
    assert run("decompress", "a.png.pxz", "-o", "a.tif").exit_code == 0
    assert {k: tags_of("a.tif")[k] for k in (282, 283, 296)} == {282: (2, 1), 283: (1, 1), 296: 1}
    r = run("decompress", "a.png.pxz", "-o", "a.bmp")
    assert r.exit_code == 1 and "aspect ratio" in r.stderr and not Path("a.bmp").exists()


def test_a_jpeg_compressed_tiff_is_warned_about_as_a_jpeg_is(workdir, rng):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save("j.tif", compression="jpeg")
    r = run("compress", "j.tif")
    assert r.exit_code == 0 and "warning: JPEG-compressed TIFF input" in r.stderr
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save("z.tif", compression="tiff_lzw")
    assert "warning" not in run("compress", "z.tif").stderr
