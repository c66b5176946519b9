"""Round trips, exact to the pixel, the mode, the palette and the ICC profile."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED
from pixzip import api, zoo
from pixzip.zoo import SHIPPED as REPO_MODELS
from pixzip.formats import images


def roundtrip(im: Image.Image, tile: int = api.DEFAULT_TILE, model=None) -> Image.Image:
    data, stats = api.compress(images.split(im), [model] if model else [], tile)
    assert stats.bytes == len(data)
    decoded, _ = api.decompress(data)
    return images.merge(decoded)


def assert_identical(a: Image.Image, b: Image.Image):
    assert a.mode == b.mode and a.size == b.size
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert a.info.get("icc_profile") == b.info.get("icc_profile")
    if a.mode == "P":
        assert a.getpalette() == b.getpalette()
        assert a.info.get("transparency") == b.info.get("transparency")


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (31, 33), (64, 64), (3, 200)])
def test_sizes(tiny_models, rng, size):
    h, w = size
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert_identical(im, roundtrip(im, tile=16))


@pytest.mark.parametrize("content", ["noise", "flat", "gradient", "extremes"])
def test_contents(tiny_models, rng, content):
    h, w = 23, 37
    yy, xx = np.mgrid[0:h, 0:w]
    a = {"noise": rng.integers(0, 256, (h, w, 3)),
         "flat": np.full((h, w, 3), (12, 200, 77)),
         "gradient": np.stack([xx * 6, yy * 11, (xx + yy) * 4], -1) % 256,
         "extremes": rng.choice([0, 255], size=(h, w, 3))}[content].astype(np.uint8)
    im = Image.fromarray(a)
    assert_identical(im, roundtrip(im))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
def test_every_mode(tiny_models, rng, mode):
    base = Image.fromarray(rng.integers(0, 256, (17, 21, 3), dtype=np.uint8))
    if mode == "P":
        im = base.quantize(colors=37)
    elif mode == "1":
        im = base.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1", dither=Image.Dither.NONE)
    else:
        im = base.convert(mode)
        if "A" in mode:
            alpha = Image.fromarray(rng.integers(0, 256, (17, 21), dtype=np.uint8))
            im.putalpha(alpha)
    assert_identical(im, roundtrip(im, tile=8))


def test_palette_with_transparency(tiny_models, rng):
    im = Image.fromarray(rng.integers(0, 4, (9, 9), dtype=np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    im.info["transparency"] = 2
    out = roundtrip(im)
    assert_identical(im, out)
    im.info["transparency"] = bytes([0, 128, 255, 255])
    assert_identical(im, roundtrip(im))


def test_icc_profile_is_kept(tiny_models, rng):
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    im.info["icc_profile"] = icc
    out = roundtrip(im)
    assert out.info["icc_profile"] == icc
    # and through a real PNG file written by the decompressor's writer
    back = Image.open(io.BytesIO(images.encode_image_file(out, "PNG")))
    assert back.info["icc_profile"] == icc


def test_tile_sizes_give_same_pixels(tiny_models, rng):
    im = Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8))
    for tile in (0, 1, 7, 16, 64):
        assert_identical(im, roundtrip(im, tile=tile))


def test_user_model_is_recorded_and_used(tiny_models, rng):
    other = zoo.load_model(str(tiny_models / "other-rgb.pxm"))
    im = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    data, _ = api.compress(images.split(im), [other])
    header = api.read_header(data)
    assert len(header.models) == 1 and other.id.startswith(header.models[0].id)
    decoded, _ = api.decompress(data)         # found by name in the installed models
    assert_identical(im, images.merge(decoded))


@pytest.mark.slow
def test_real_photo_with_shipped_model():
    photo = SHARED / "cbsd68" / "3096.png"
    if not photo.exists() or not (REPO_MODELS / f"{zoo.DEFAULTS[3]}.pxm").exists():
        pytest.skip("needs ../shared/data/cbsd68 and the shipped models")
    im = Image.open(photo)
    im.load()
    data, stats = api.compress(images.split(im))
    assert stats.bits_per_subpixel < 8 * len(open(photo, "rb").read()) / (im.width * im.height * 3)
    assert abs(stats.bits_per_subpixel / stats.model_bits_per_subpixel - 1) < 0.01
    decoded, _ = api.decompress(data)
    assert_identical(im, images.merge(decoded))


def test_small_images_get_the_small_image_model(tiny_models, rng):
    """RGB images up to 64x64 pixels use the small-image default (when installed), larger ones the
    photo default; the file names whichever was used."""
    for (h, w), name in [((32, 32), zoo.SMALL_DEFAULTS[3]), ((64, 64), zoo.SMALL_DEFAULTS[3]),
                         ((65, 64), zoo.DEFAULTS[3])]:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        data, _ = api.compress(images.split(im))
        assert api.read_header(data).models[0].name == name
        decoded, _ = api.decompress(data)
        assert_identical(im, images.merge(decoded))


def test_shipped_models_are_found_by_identity(tiny_models, rng, monkeypatch):
    """Files leave out the names of the models that come with pixzip (fewer bytes); the reader finds
    them by identity and `read_header` shows their names. A user's own model stays named."""
    monkeypatch.setattr(zoo, "SHIPPED", tiny_models)
    im = Image.fromarray(rng.integers(0, 256, (20, 230, 3), dtype=np.uint8))     # over the small-image size
    data, _ = api.compress(images.split(im))
    assert zoo.DEFAULTS[3].encode() not in data
    assert api.read_header(data).models[0].name == zoo.DEFAULTS[3]
    decoded, _ = api.decompress(data)
    assert_identical(im, images.merge(decoded))
    monkeypatch.setattr(zoo, "SHIPPED", tiny_models / "elsewhere")
    named, _ = api.compress(images.split(im))
    assert zoo.DEFAULTS[3].encode() in named and len(named) == len(data) + len(zoo.DEFAULTS[3])
