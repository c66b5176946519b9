"""Committed .pxz files must keep decoding to the same pixels: any change to the format, the engine's
arithmetic or the coder that would break old files fails here. Files of older format versions live in
folders named after the version (v1/, v2/, v3/) and must decode forever; the current version's files must also
re-encode to the same bytes. Add a version's files only with a version bump (make_golden.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pixzip import api
from pixzip.backends import adaptive_planes
from pixzip.efforts import Effort
from pixzip.entropy import lowbits
from pixzip.formats import container, transforms
from pixzip.nets import modelfile

GOLDEN = Path(__file__).resolve().parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.fixture(scope="module")
def golden_models():
    return [modelfile.load(GOLDEN / "golden-rgb.pxm"), modelfile.load(GOLDEN / "golden-gray.pxm")]


VERSIONS = {"": 4, "v3": 3, "v2": 2, "v1": 1}      # folder -> the format version of its files
WRITABLE = ["", "v3", "v2"]                         # the versions pixzip still writes


def names(folder: str) -> list[str]:
    """The files a folder holds: those of its version and the earlier ones (expected.json's "since")."""
    return sorted(n for n, e in EXPECTED.items() if e["since"] <= VERSIONS[folder])


@pytest.mark.parametrize("folder, name", [(f, n) for f in sorted(VERSIONS) for n in names(f)])
def test_golden_file_decodes_to_known_pixels(name, folder, golden_models):
    """Every format version's files, written by the pixzip of that time."""
    data = (GOLDEN / folder / name).read_bytes()
    assert api.read_header(data).version == VERSIONS[folder]
    image, header = api.decompress(data, golden_models)
    exp = EXPECTED[name]
    assert image.mode == exp["mode"] and [image.width, image.height] == exp["size"]
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == exp["sha256"]
    assert header.tile == 8


@pytest.mark.parametrize("folder", WRITABLE)
def test_golden_files_reencode_identically(golden_models, folder):
    """Encoding the decoded image again gives the committed bytes: the encoder is stable too (for
    every version pixzip writes)."""
    for name in names(folder):
        data = (GOLDEN / folder / name).read_bytes()
        image, header = api.decompress(data, golden_models)
        used = [m for m in golden_models if any(m.id.startswith(r.id) for r in header.models)]
        again, _ = api.compress(image, used, tile=8, version=VERSIONS[folder], effort=EXPECTED[name]["effort"])
        if again != data and container.LZ in header.entropy:
            _same_but_the_lz_stream(again, data, golden_models, name)
            continue
        assert again == data, name


def _same_but_the_lz_stream(again: bytes, data: bytes, models, name: str):
    """An LZ plane's bytes are liblzma's encoder's, which may differ between liblzma versions (its
    decoder's reading of them may not; so may the mode its sizes pick): the header must be the same
    otherwise, and the pixels."""
    h1, h2 = api.read_header(again), api.read_header(data)
    for f in ("mode", "width", "height", "tile", "planes", "entropy", "pixel_crc", "transform"):
        assert getattr(h1, f) == getattr(h2, f), (name, f)
    assert api.decompress(again, models)[0].pixel_bytes() == api.decompress(data, models)[0].pixel_bytes(), name


def test_version_4_files_cover_every_stage_and_a_transform():
    """The current version's golden files hold static, adaptive (both levels), stored and LZ planes and
    transform records, so that each keeps decoding as written."""
    headers = [api.read_header((GOLDEN / n).read_bytes())
               for n in names("") + ["rgb16.pxz", "rgb16-adaptive.pxz", "rgb16-adaptive2.pxz"]]
    stages = {(s, lv) for h in headers for s, lv in zip(h.entropy, h.levels)}
    assert {(0, 0), (1, 1), (1, 2), (2, 0), (3, 0)} <= stages
    assert any(h.transform for h in headers)
    firsts = {type(transforms.TransformRecord.from_bytes(h.transform).steps[0]) for h in headers if h.transform}
    assert transforms.GreyFromBilevel in firsts                       # a bilevel image as L (session 26)


def test_golden_models_are_stable():
    """The model files hash to the identities the golden files name."""
    ids = [modelfile.load(GOLDEN / f).id for f in ("golden-rgb.pxm", "golden-gray.pxm")]
    for name in EXPECTED:
        header = api.read_header((GOLDEN / ("v1" if EXPECTED[name]["since"] == 1 else "") / name).read_bytes())
        assert all(any(i.startswith(m.id) for i in ids) for m in header.models)


@pytest.mark.parametrize("folder", WRITABLE)
def test_wide_stream_golden_file(folder):
    """A 16-bit-stream, slope-2 model (the v2 models' structure) keeps decoding its file to the known
    pixels (those of rgb.pxz) and re-encoding it to the same bytes."""
    model = modelfile.load(GOLDEN / "golden-rgb16.pxm")
    assert model.net.cfg.stream_bits == 16 and model.net.slope == 2
    data = (GOLDEN / folder / "rgb16.pxz").read_bytes()
    image, _ = api.decompress(data, [model])
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == EXPECTED["rgb.pxz"]["sha256"]
    assert api.compress(image, [model], tile=8, version=VERSIONS[folder], effort=1)[0] == data


# levels 1 and 2 were efforts 4 and 5 in session 12; levels 3 and 4 (with the residual predictor) in session
# 13; levels 5 and 6 (with the exact-predictor vote) since, on make_golden.vote_image (where the vote fires)
RGB = EXPECTED["rgb.pxz"]["sha256"]
VOTE = "fe61cf1851487bed99e94315e1e9148db5e020fd4abfc097d4426b147ee1b74f"
# and levels 7 to 10 (with the least-squares predictor, session 16; its shifted table, 17) on it in one tile of 32
ADAPTIVE_GOLDEN = [("rgb16-adaptive.pxz", 1, RGB, 8), ("rgb16-adaptive2.pxz", 2, RGB, 8),
                   ("rgb16-adaptive3.pxz", 3, RGB, 8), ("rgb16-adaptive4.pxz", 4, RGB, 8),
                   ("rgb16-adaptive5.pxz", 5, VOTE, 8), ("rgb16-adaptive6.pxz", 6, VOTE, 8),
                   ("rgb16-adaptive7.pxz", 7, VOTE, 32), ("rgb16-adaptive8.pxz", 8, VOTE, 32),
                   ("rgb16-adaptive9.pxz", 9, VOTE, 32), ("rgb16-adaptive10.pxz", 10, VOTE, 32),
                   ("rgb16-adaptive9-chains.pxz", 9, VOTE, 8)]


# levels in value space (entropy stage 4, session 20): make_golden.rgb565_image at level 9, tiles of 8
RGB565 = "696f25e9383a777d9ecd03ddb3709582970e3ed0c03b389eda68bc5ae22f3d1b"


@pytest.mark.parametrize("reference", [False, True])
def test_the_value_space_levels_golden_file(reference, monkeypatch):
    """A levels plane whose network reads the values (stage 4) keeps decoding, in the compiled stage and in
    the reference on the torch engine's outputs, and re-encodes to the same bytes."""
    model = modelfile.load(GOLDEN / "golden-rgb16.pxm")
    data = (GOLDEN / "rgb16-levels-values.pxz").read_bytes()
    if reference:
        monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    image, header = api.decompress(data, [model])
    assert header.entropy == [container.ADAPTIVE_VALUES] and header.levels == [9]
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == RGB565
    if not reference and adaptive_planes.adaptive_native(model.net):
        effort = Effort(models=1, stage=container.ADAPTIVE, level=9, transforms="estimate")
        assert api.compress(image, [model], tile=8, effort=effort)[0] == data


# levels 11 and 12 (contexts on the values, session 21), 17 and 18 (an index's own bits, session 33):
# make_golden.symbols_image, a P image, tiles of 16
SYMBOLS = "2937ccd519ea0e124f2042af53a6114c72e07f9f95c2277fe7c89f2c9445e604"


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("name, level, symbols", [("p-symbols11.pxz", 9, 11), ("p-symbols12.pxz", 10, 12),
                                                  ("p-symbols17.pxz", 9, 17), ("p-symbols18.pxz", 10, 18)])
def test_the_symbols_levels_golden_files(name, level, symbols, reference, monkeypatch):
    """A plane of palette indices at the levels with contexts on the values keeps decoding, in the compiled stage
    and in the reference, and re-encodes to the same bytes."""
    model = modelfile.load(GOLDEN / "golden-gray16.pxm")
    data = (GOLDEN / name).read_bytes()
    if reference:
        monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    image, header = api.decompress(data, [model])
    assert header.entropy == [container.ADAPTIVE] and header.levels == [symbols] and image.mode == "P"
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == SYMBOLS
    if not reference and adaptive_planes.adaptive_native(model.net):
        effort = Effort(models=1, stage=container.ADAPTIVE, level=level, symbols_level=symbols, transforms="estimate")
        assert api.compress(image, [model], tile=16, effort=effort)[0] == data


@pytest.mark.parametrize("name, level, pixels, tile", ADAPTIVE_GOLDEN)
def test_adaptive_golden_files(name, level, pixels, tile):
    """The adaptive stage's files (written with the native coder's model structure), one per level, keep
    decoding (the compiled stage where it is installed, else the reference) and, where the compiled
    stage encodes, re-encoding to the same bytes."""
    effort = Effort(models=1, stage=container.ADAPTIVE, level=level)
    model = modelfile.load(GOLDEN / "golden-rgb16.pxm")
    data = (GOLDEN / name).read_bytes()
    image, header = api.decompress(data, [model])
    assert header.entropy == [1] and header.levels == [level]
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == pixels
    if adaptive_planes.adaptive_native(model.net):
        assert api.compress(image, [model], tile=tile, effort=effort)[0] == data


# level 13 (the median predictor in the network's place, session 23): make_golden.radial_image, tiles of 16;
# level 14 (a bilevel coder's templates on level 13, session 25) and 15 (with the match model, session 26):
# make_golden.bilevel_image, tiles of 16; level 16 (the match's value as the centre): make_golden.grey_glyphs_image
RADIAL = "f8576a3c135cc52e112139465ed8542887dd0a412258f03864ff247b83a63454"
BILEVEL = "a2a61a74ab89da38584f0ab22180b09cf9777df3eab7dcd95a9de827d547a34d"
GREY_GLYPHS = "61680f10a297baae9a65f73e745ad27b453933b8c25433755b5f3295858084f4"     # make_golden.grey_glyphs_image


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("name, level, model_file, pixels", [("rgb16-classical13.pxz", 13, "golden-rgb16.pxm", RADIAL),
                                                              ("bilevel14.pxz", 14, "golden-gray16.pxm", BILEVEL),
                                                              ("bilevel15.pxz", 15, "golden-gray16.pxm", BILEVEL),
                                                              ("bilevel16.pxz", 16, "golden-gray16.pxm", GREY_GLYPHS)])
def test_the_classical_levels_golden_files(name, level, model_file, pixels, reference, monkeypatch):
    """A plane at a level whose stage reads a median predictor instead of the network (13; 14 with a bilevel coder's
    templates) keeps decoding, in the compiled stage and in the reference, and re-encodes to the same bytes."""
    model = modelfile.load(GOLDEN / model_file)
    data = (GOLDEN / name).read_bytes()
    if reference:
        monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    image, header = api.decompress(data, [model])
    assert header.entropy == [container.ADAPTIVE] and header.levels == [level]
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == pixels
    if not reference and adaptive_planes.adaptive_native(model.net):
        effort = Effort(models=1, stage=container.ADAPTIVE, level=level)
        assert api.compress(image, [model], tile=16, effort=effort)[0] == data


# LZ tiles (session 22): conftest.text_beside_photo at level 9 in tiles of 48 with the shipped pcnn-rgb-v8
TEXT_BESIDE_PHOTO = "d1d376a73b8e5584af2dc5d21e6428890c82f43ea7ce134eb66d52beaedbbc36"


def test_the_lz_tiles_golden_file():
    """A plane whose text tiles are in one LZ stream (two of them chain heads, replayed through the stage) keeps
    decoding (the compiled stage where it is installed, else the reference: test_wire has both on a tiny model)
    and re-encodes to the same bytes."""
    from pixzip import zoo
    model = zoo.load_model("pcnn-rgb-v8")
    data = (GOLDEN / "lz-tiles.pxz").read_bytes()
    header, offset = container.read_header(data)
    kinds = [container.unframe_tile(s)[1] for s in container.read_streams(data, header, offset)]
    assert header.entropy == [container.ADAPTIVE] and kinds.count(container.LZ_TILE) == 4
    image, _ = api.decompress(data)
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == TEXT_BESIDE_PHOTO
    if adaptive_planes.adaptive_native(model.net):
        effort = Effort(models=1, stage=container.ADAPTIVE, level=9)
        assert api.compress(image, [model], tile=48, effort=effort)[0] == data


# The low part's layout 2 (session 24): conftest.smooth_sixteen_bit(96, 128) at 16 bits, golden-rgb.pxm, -e 1
SMOOTH_SIXTEEN_BIT = "ec98c2f97173c40ae14fcd96b95cd25b1bc05eac68a4c13bedb9f9466b3f1e4a"


def test_the_low_part_layout_2_golden_file(golden_models):
    """A 16-bit image whose low part's tables follow the prediction's position against its bin (a stream that
    starts with byte 2) keeps decoding, and re-encodes to the same bytes."""
    data = (GOLDEN / "sixteen-low2.pxz").read_bytes()
    header, offset = container.read_header(data)
    assert header.depth == 16 and header.low_streams == 1 and header.splits[0].low_bits == 4
    assert container.read_streams(data, header, offset)[-1].view("u1")[0] == lowbits.LAYOUT_POSITIONS
    image, _ = api.decompress(data, golden_models)
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == SMOOTH_SIXTEEN_BIT
    assert api.compress(image, golden_models[:1], tile=8, effort=1)[0] == data


# the escape palette (transform kind 9, session 33): make_golden.escape_image, coded statically with the golden grey model
ESCAPE = "0be0674e74777daa79ffd03df78da476d65fcb2c5d715ec4da8ccd3491169534"


def test_the_escape_palette_golden_file():
    """A file whose record holds an EscapePalette keeps decoding to the same pixels."""
    data = (GOLDEN / "escape-palette.pxz").read_bytes()
    image, header = api.decompress(data, [modelfile.load(GOLDEN / "golden-gray.pxm")])
    record = transforms.TransformRecord.from_bytes(header.transform)
    assert [type(s) for s in record.steps] == [transforms.EscapePalette] and image.mode == "RGB"
    assert hashlib.sha256(image.pixel_bytes()).hexdigest() == ESCAPE
