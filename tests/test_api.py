"""The Python API (pixzip.encode / decode / decode_image / compress_file / decompress_file) and the
Pillow plugin, on the tiny test models; `import pixzip` stays cheap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixzip
from pixzip import PixzipError, pillow
from pixzip.formats import container, metadata

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _models(tiny_models):
    return tiny_models


@pytest.mark.parametrize("shape, dtype", [((9, 11), np.uint8), ((9, 11, 1), np.uint8), ((9, 11, 2), np.uint8),
                                          ((9, 11, 3), np.uint8), ((9, 11, 4), np.uint8),
                                          ((7, 5, 3), np.uint16), ((7, 5), np.uint16)])
def test_arrays_round_trip_exactly(rng, shape, dtype):
    a = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    back = pixzip.decode(pixzip.encode(a))
    expected = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    assert back.dtype == dtype and np.array_equal(back, expected)


def test_bilevel_array(rng):
    a = rng.integers(0, 2, (8, 13)).astype(bool)
    full = pixzip.decode_full(pixzip.encode(a))
    assert full.mode == "1" and full.pixels.dtype == bool and np.array_equal(full.pixels, a)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
def test_pillow_images_round_trip_with_their_mode(rng, mode):
    im = Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).convert(mode)
    back = pixzip.decode_image(pixzip.encode(im))
    assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(im))
    if mode == "P":
        assert back.getpalette() == im.getpalette()


def test_decode_full_keeps_profile_and_metadata(rng):
    im = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    im.info.update(icc_profile=b"not a real profile", exif=b"Exif\x00\x00II*\x00", xmp=b"<x:xmpmeta/>")
    full = pixzip.decode_full(pixzip.encode(im))
    assert full.icc == b"not a real profile" and full.depth == 8 and full.mode == "RGB"
    assert [i.kind for i in full.metadata] == [metadata.EXIF, metadata.XMP]
    stripped = pixzip.decode_full(pixzip.encode(im, strip=True))
    assert stripped.metadata == [] and stripped.icc == b"not a real profile"


def test_effort_and_model_options_reach_the_coder(rng, tiny_models):
    a = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
    default, other = pixzip.encode(a), pixzip.encode(a, model=str(tiny_models / "other-rgb.pxm"))
    assert default != other and np.array_equal(pixzip.decode(other), a)
    assert pixzip.decode_full(other).models == ["other-rgb"]
    with pytest.raises(PixzipError, match="effort"):
        pixzip.encode(a, effort=99)


@pytest.mark.parametrize("bad, message", [(np.zeros((4, 4), np.float32), "float32"),
                                          (np.zeros((4, 4, 5), np.uint8), "shape"),
                                          ("no-such-file.png", "no-such-file.png"),
                                          (3.5, "float")])
def test_encode_refuses_what_it_cannot_keep_in_one_line(bad, message):
    with pytest.raises(PixzipError, match=message) as e:
        pixzip.encode(bad)
    assert "\n" not in str(e.value)


def test_decode_refuses_what_is_not_a_pxz_in_one_line():
    with pytest.raises(PixzipError, match="not a pixzip file"):
        pixzip.decode(b"\x89PNG\r\n\x1a\n and so on")
    with pytest.raises(PixzipError, match="decompress_file"):
        pixzip.decode("photo.pxz")


def test_file_helpers_name_outputs_as_the_cli_and_never_overwrite(rng, tmp_path):
    src = tmp_path / "a.png"
    a = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    Image.fromarray(a).save(src)
    pxz = pixzip.compress_file(src)
    assert pxz == tmp_path / "a.png.pxz"
    with pytest.raises(PixzipError, match="already exists"):
        pixzip.compress_file(src)
    src.unlink()
    out = pixzip.decompress_file(pxz)
    assert out == src and np.array_equal(np.asarray(Image.open(out)), a)
    bmp = pixzip.decompress_file(pxz, tmp_path / "b.bmp")
    assert Image.open(bmp).format == "BMP"
    with pytest.raises(PixzipError, match="already exists"):
        pixzip.decompress_file(pxz, bmp)
    pixzip.decompress_file(pxz, bmp, force=True)
    with pytest.raises(PixzipError, match="lossy"):
        pixzip.decompress_file(pxz, tmp_path / "c.jpg")
    assert not (tmp_path / "c.jpg").exists()


def test_pillow_opens_and_saves_pxz(rng, tmp_path):
    a = rng.integers(0, 256, (11, 7, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.pxz")
    assert (tmp_path / "x.pxz").read_bytes()[:8] == container.MAGIC
    with Image.open(tmp_path / "x.pxz") as im:
        assert (im.format, im.mode, im.size) == ("PXZ", "RGB", (7, 11))     # header only, so far
        assert np.array_equal(np.asarray(im), a)
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "x.pxz").read_bytes())
    with Image.open(tmp_path / "renamed.bin") as im:                   # found by its magic, not its name
        assert im.format == "PXZ" and im.convert("L").size == (7, 11)


def test_pillow_16_bit_grey_and_refused_16_bit_colour(rng, tmp_path):
    a = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    (tmp_path / "g.pxz").write_bytes(pixzip.encode(a))
    with Image.open(tmp_path / "g.pxz") as im:
        assert im.mode == "I;16" and np.array_equal(np.asarray(im), a)
    (tmp_path / "c.pxz").write_bytes(pixzip.encode(rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)))
    with pytest.raises(OSError, match="pixzip.decode"):
        Image.open(tmp_path / "c.pxz")


@pytest.mark.parametrize("kind", ["grey as RGB", "few colours", "repeated rows"])
def test_pillow_opens_transformed_files_with_the_original_mode_and_size(rng, tmp_path, kind):
    """A file whose encoder chose a transform has the coded image's mode and size in its header; Pillow
    must see the original's (it once showed grey-as-RGB as L with RGB's bytes)."""
    if kind == "grey as RGB":
        a = np.repeat(rng.integers(0, 256, (9, 10, 1), dtype=np.uint8), 3, axis=2)
    elif kind == "few colours":
        a = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)[rng.integers(0, 3, (9, 10))]
    else:
        a = np.repeat(rng.integers(0, 256, (3, 10, 3), dtype=np.uint8), 4, axis=0)
    (tmp_path / "t.pxz").write_bytes(pixzip.encode(a, effort=4))
    assert container.read_header((tmp_path / "t.pxz").read_bytes())[0].transform     # a transform was chosen
    with Image.open(tmp_path / "t.pxz") as im:
        assert (im.mode, im.size) == ("RGB", (10, a.shape[0]))
        assert np.array_equal(np.asarray(im), a)


def test_plugin_magic_is_the_containers():
    assert pillow.MAGIC == container.MAGIC


def test_import_pixzip_is_cheap():
    """No torch, no numpy, no coder, not even Pillow at `import pixzip`: the API loads on first use."""
    code = ("import sys, pixzip; "
            "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'pixzip.api', 'pixzip.simple') if m in sys.modules), "
            "callable(pixzip.encode))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["[]", "True"]


@pytest.mark.parametrize("imports", ["import pixzip; from PIL import Image",
                                     "from PIL import Image; import pixzip",
                                     "import pixzip; from PIL import ImageFile, Image",
                                     "import pixzip, PIL.ImageFile; from PIL import Image"])
def test_pillow_finds_the_plugin_whatever_was_imported_first(tmp_path, imports):
    """The plugin registers when PIL.Image is first used (or at once if it was imported before pixzip),
    also when PIL.Image is imported halfway through PIL.ImageFile, which the plugin's class needs."""
    code = (f"{imports}\nimport numpy as np\n"
            f"Image.fromarray(np.full((3, 4, 3), 7, np.uint8)).save({str(tmp_path / 'x.pxz')!r})\n"
            f"im = Image.open({str(tmp_path / 'x.pxz')!r})\n"
            "print(im.format, np.asarray(im).sum(), Image.registered_extensions()['.pxz'])")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["PXZ", str(7 * 36), "PXZ"], out.stderr
