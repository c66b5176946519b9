"""Format v4 wired into compress/decompress: effort levels, the adaptive and stored entropy stages, the
transform record, their validation, threads, and the reference decoding a native file."""

from __future__ import annotations

import dataclasses
import importlib
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_model, radial_blend, to_rgb565
from pixzip import api
from pixzip.efforts import EFFORTS
from pixzip import plane_options as plane_options_module
from pixzip.plane_options import plane_options
from pixzip.backends import adaptive_planes, native
from pixzip.entropy import adaptive
from pixzip.entropy.value_map import ValueMap
from pixzip.errors import PixzipError
from pixzip.formats import container, images, transforms
from pixzip.formats.container import ADAPTIVE, STATIC, STORED
from pixzip.nets import modelfile

needs_c = pytest.mark.skipif(not native.adaptive_available(), reason="needs the compiled adaptive coder")


@pytest.fixture(scope="module")
def fast_rgb(tmp_path_factory):
    """A tiny model of the native coder's structure (16-bit stream, slope 2, skip predictor): the encoder
    takes the adaptive stage only where the compiled coder runs the model."""
    path = tmp_path_factory.mktemp("fast") / "fast-rgb.pxm"
    modelfile.save(make_tiny_model(3, hidden=12, seed=21, blocks=2, stream_bits=16, slope=2, skip_kernel=5)[1], path)
    model = modelfile.load(path)
    if not adaptive_planes.adaptive_native(model.net):
        pytest.skip("needs the compiled adaptive coder")
    return model


def _photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields plus a little noise: what the coders gain on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3 + yy, 128 + 40 * np.sin(xx / 5.0), yy * 4], -1)
    return np.clip(base + rng.integers(-3, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def _pil(mode: str, h: int, w: int, rng) -> Image.Image:
    base = Image.fromarray(_photo_like(h, w, int(rng.integers(1000))))
    if mode == "P":
        return base.quantize(colors=29)
    if mode == "1":
        return base.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1", dither=Image.Dither.NONE)
    im = base.convert(mode)
    if "A" in mode:
        im.putalpha(Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)))
    return im


def _round_trip(image: images.ImageData, **kw) -> tuple[bytes, images.ImageData, container.Header]:
    data, stats = api.compress(image, **kw)
    assert stats.bytes == len(data)
    decoded, header = api.decompress(data)
    assert decoded.mode == image.mode and decoded.depth == image.depth
    assert decoded.palette == image.palette and decoded.transparency == image.transparency
    assert all(np.array_equal(a, b) for a, b in zip(decoded.planes, image.planes))
    return data, decoded, header


# -- every effort, every mode -------------------------------------------------------------------------------
@pytest.mark.parametrize("effort", sorted(api.EFFORTS))
def test_every_effort_round_trips_every_mode(tiny_models, rng, effort):
    for mode, (h, w), tile in (("L", (13, 11), 8), ("LA", (9, 14), 0), ("RGB", (17, 21), 8),
                               ("RGBA", (11, 7), 8), ("P", (15, 12), 8), ("1", (10, 19), 8)):
        _round_trip(images.split(_pil(mode, h, w, rng)), tile=tile, effort=effort)
    deep = images.ImageData("L", 12, 9, [(rng.integers(0, 4096, (9, 12, 1)) * 16).astype(np.uint16)], depth=16)
    _round_trip(deep, tile=8, effort=effort)


def test_efforts_outside_the_table_are_refused_in_one_line(tiny_models, rng):
    image = images.split(_pil("RGB", 5, 5, rng))
    for effort in (0, max(api.EFFORTS) + 1):
        with pytest.raises(PixzipError, match="effort must be"):
            api.compress(image, effort=effort)


def test_the_ladder_uses_the_stages_it_names(tiny_models, fast_rgb):
    image = images.ImageData("RGB", 24, 20, [_photo_like(20, 24)])
    for effort, plan in api.EFFORTS.items():
        header = api.decompress(api.compress(image, [fast_rgb], tile=16, effort=effort)[0], [fast_rgb])[1]
        assert header.entropy[0] in (plan.stage, STORED) or plan.static_too
        if header.entropy[0] == ADAPTIVE:
            assert header.levels == [plan.level]


def test_each_effort_codes_in_its_own_tiles_where_the_caller_names_none(tiny_models, fast_rgb):
    """The ensemble's levels code in tiles of 512 (a 481x321 photograph in one), the others in 256; a size the
    caller names wins at every level."""
    image = images.ImageData("RGB", 40, 36, [_photo_like(36, 40)])
    assert {e: plan.tile for e, plan in api.EFFORTS.items() if plan.tile} == {7: 512, 8: 512, 9: 512}
    for effort, plan in api.EFFORTS.items():
        header = api.decompress(api.compress(image, [fast_rgb], effort=effort)[0], [fast_rgb])[1]
        assert header.tile == (plan.tile or api.DEFAULT_TILE), effort
        assert api.decompress(api.compress(image, [fast_rgb], tile=16, effort=effort)[0], [fast_rgb])[1].tile == 16


def test_without_the_compiled_coder_the_encoder_takes_the_static_stage(tiny_models):
    """The tiny default models are not of the native coder's structure: the reference stage would code
    them at ~1 000 sub-pixels a second, so the adaptive efforts code them statically."""
    image = images.ImageData("RGB", 20, 16, [_photo_like(16, 20)])
    header = api.decompress(api.compress(image, tile=8, effort=4)[0])[1]
    assert header.entropy[0] in (STATIC, STORED)


def test_older_versions_get_the_static_stage_at_any_effort(tiny_models):
    image = images.ImageData("RGB", 20, 16, [_photo_like(16, 20)])
    data, _ = api.compress(image, tile=8, effort=max(api.EFFORTS), version=3)
    assert data[8] == 3
    decoded, header = api.decompress(data)
    assert header.entropy == [STATIC] and np.array_equal(decoded.planes[0], image.planes[0])


# -- threads ------------------------------------------------------------------------------------------------
@needs_c
@pytest.mark.parametrize("effort", [4, 5])
def test_one_and_two_threads_give_the_same_bytes(effort):
    image = images.ImageData("RGB", 45, 37, [_photo_like(37, 45, seed=3)])
    one = api.compress(image, tile=16, workers=1, effort=effort)[0]
    two = api.compress(image, tile=16, workers=2, effort=effort)[0]
    assert one == two and api.decompress(one)[1].entropy == [ADAPTIVE]
    assert np.array_equal(api.decompress(one, workers=2)[0].planes[0], image.planes[0])


# -- the stored fallback ------------------------------------------------------------------------------------
@pytest.mark.parametrize("effort", [1, 4])
def test_noise_is_stored_within_a_few_bytes_of_raw(tiny_models, rng, effort):
    pixels = rng.integers(0, 256, (31, 29, 3), dtype=np.uint8)
    data, _, header = _round_trip(images.ImageData("RGB", 29, 31, [pixels]), tile=8, effort=effort)
    assert header.entropy == [STORED] and header.stored_bits == [8]
    assert len(data) <= pixels.size + 64


def test_few_levels_are_stored_at_fewer_bits(tiny_models, rng):
    pixels = rng.integers(0, 4, (20, 30, 1), dtype=np.uint8)     # noise over 4 values: 2 bits a sample
    data, _, header = _round_trip(images.ImageData("L", 30, 20, [pixels]), tile=8, effort=1)
    assert header.entropy == [STORED] and header.stored_bits == [2]
    assert len(data) <= pixels.size // 4 + 64


def test_a_noise_tile_beside_smooth_ones_is_stored_alone(rng, fast_rgb):
    """Within an adaptive plane, a tile whose samples cost more coded than raw is stored by itself."""
    pixels = _photo_like(16, 32, seed=5)
    pixels[:, 16:] = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data, _ = api.compress(images.ImageData("RGB", 32, 16, [pixels]), [fast_rgb], tile=16, effort=4)
    decoded, header = api.decompress(data, [fast_rgb])
    assert np.array_equal(decoded.planes[0], pixels)
    assert header.entropy == [ADAPTIVE]
    h, offset = container.read_header(data)
    flags = [container.unframe(s)[1] for s in container.read_streams(data, h, offset)]
    assert flags == [False, True]
    # both decoders' progress counts every tile, the stored one too
    for native_stage in (True, False):
        counted = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(adaptive_planes, "adaptive_native", lambda m, n=native_stage: n and native.adaptive_available())
            api.decompress(data, [fast_rgb], progress=counted.append)
        assert sum(counted) == 16 * 32, native_stage


# -- transforms ---------------------------------------------------------------------------------------------
def _record(data: bytes) -> transforms.TransformRecord:
    return transforms.TransformRecord.from_bytes(container.read_header(data)[0].transform)


def test_grey_saved_as_rgb_is_coded_as_grey(tiny_models):
    grey = _photo_like(21, 17)[:, :, :1]
    data, _, header = _round_trip(images.ImageData("RGB", 17, 21, [np.repeat(grey, 3, axis=2)]), tile=8, effort=2)
    assert header.mode == "L" and any(isinstance(s, transforms.GreyFromRGB) for s in _record(data).steps)


def test_few_colours_are_coded_as_a_palette(tiny_models, rng):
    colours = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    pixels = colours[(np.arange(24 * 30).reshape(24, 30, 1) // 37) % 5][:, :, 0]
    data, _, header = _round_trip(images.ImageData("RGB", 30, 24, [pixels]), tile=8, effort=2)
    assert any(isinstance(s, (transforms.Palette, transforms.Levels)) for s in _record(data).steps)


@pytest.mark.parametrize("effort", [2, 6])
def test_a_p_image_stays_p_with_its_palette_order(tiny_models, rng, effort):
    im = Image.fromarray(_photo_like(19, 23)).quantize(colors=17)
    im.info["transparency"] = 3
    image = images.split(im)
    _, decoded, _ = _round_trip(image, tile=8, effort=effort)
    back = images.merge(decoded)
    assert back.mode == "P" and back.getpalette() == im.getpalette()
    assert np.array_equal(np.asarray(back), np.asarray(im)) and back.info.get("transparency") == 3


def test_the_pixel_crc_covers_the_original_image(tiny_models):
    grey = np.repeat(_photo_like(9, 11)[:, :, :1], 3, axis=2)
    image = images.ImageData("RGB", 11, 9, [grey])
    data, _ = api.compress(image, tile=8, effort=2)
    assert container.read_header(data)[0].pixel_crc == zlib.crc32(image.pixel_bytes())


# -- corrupt new fields -------------------------------------------------------------------------------------
def _rewrite(data: bytes, edit) -> bytes:
    """The file re-written after `edit(header, streams)` (a valid CRC: only the field under test is bad)."""
    h, offset = container.read_header(data)
    streams = container.read_streams(data, h, offset)
    streams = edit(h, streams) or streams
    return container.write(h, streams)


def _refused(data: bytes, match: str, models=()):
    with pytest.raises(PixzipError, match=match) as e:
        api.decompress(data, models)
    assert "\n" not in str(e.value)


@pytest.fixture
def adaptive_file(tiny_models, fast_rgb):
    data = api.compress(images.ImageData("RGB", 20, 18, [_photo_like(18, 20)]), [fast_rgb], tile=8, effort=4)[0]
    assert container.read_header(data)[0].entropy == [ADAPTIVE]
    return data


def _set(**fields):
    def edit(h, streams):
        for k, v in fields.items():
            setattr(h, k, v)
    return edit


def test_unknown_stage_level_and_width_are_refused(adaptive_file, fast_rgb):
    assert api.decompress(adaptive_file, [fast_rgb])[1].entropy == [ADAPTIVE]
    _refused(_rewrite(adaptive_file, _set(entropy=[5])), "entropy stage 5", [fast_rgb])
    # stage 4 (levels in value space) takes its values from a levels transform the file must have
    _refused(_rewrite(adaptive_file, _set(entropy=[4])), "stage 4 without its levels or palette transform", [fast_rgb])
    _refused(_rewrite(adaptive_file, _set(levels=[19])), r"adaptive level 19", [fast_rgb])
    _refused(_rewrite(adaptive_file, _set(stored_bits=[9])), "stored sample width", [fast_rgb])
    _refused(_rewrite(adaptive_file, _set(entropy=[3], lz_modes=[8])), r"LZ stage mode 8", [fast_rgb])


def test_a_damaged_frame_is_refused(adaptive_file, fast_rgb):
    def bad_head(h, streams):
        streams[0] = streams[0].copy()
        streams[0][0] |= 0x80
    _refused(_rewrite(adaptive_file, bad_head), "corrupted", [fast_rgb])

    def bad_padding(h, streams):
        s = streams[0].copy()
        raw = bytearray(s.astype("<u4").tobytes())
        raw[0] = (raw[0] & ~3) | 3          # claims three padding bytes that are not all zero
        raw[-1] = raw[-1] or 1
        streams[0] = np.frombuffer(bytes(raw), "<u4").astype(np.uint32)
    _refused(_rewrite(adaptive_file, bad_padding), "corrupted", [fast_rgb])


def test_an_adaptive_stream_too_short_for_its_tile_is_refused(adaptive_file, fast_rgb):
    def grow(h, streams):
        h.width, h.height, h.tile = 9000, 9000, 0
        return [container.frame(b"\x01\x02")]
    _refused(_rewrite(adaptive_file, grow), "too short", [fast_rgb])


def test_a_stored_plane_of_the_wrong_length_is_refused(tiny_models, rng):
    data = api.compress(images.ImageData("L", 9, 7, [rng.integers(0, 256, (7, 9, 1), dtype=np.uint8)]),
                        tile=8, effort=1)[0]
    assert container.read_header(data)[0].entropy == [STORED]
    _refused(_rewrite(data, lambda h, s: [container.frame(b"\x00" * 62)]), "stored plane")


def test_a_corrupt_transform_record_is_refused(tiny_models):
    grey = np.repeat(_photo_like(9, 11)[:, :, :1], 3, axis=2)
    data = api.compress(images.ImageData("RGB", 11, 9, [grey]), tile=8, effort=2)[0]
    _refused(_rewrite(data, _set(transform=b"\x01\x00\x07")), "transform record")
    _refused(_rewrite(data, _set(transform=b"\x09\x00\x00")), "transform record")
    record = container.read_header(data)[0].transform
    _refused(_rewrite(data, _set(mode="RGB", planes=[(0, 3)], transform=record)), "corrupted")


def test_a_record_that_enlarges_past_the_pixel_limit_is_refused_before_decoding(tiny_models):
    art = np.repeat(np.repeat(_photo_like(6, 5), 4, axis=0), 4, axis=1)       # pixel art scaled up 4x
    data = api.compress(images.ImageData("RGB", 20, 24, [art]), tile=8, effort=2)[0]
    h = container.read_header(data)[0]
    assert h.width * h.height < 20 * 24
    with pytest.raises(PixzipError, match="over the limit"):
        api.decompress(data, max_pixels=h.width * h.height + 1)


def test_older_versions_refuse_the_new_optional_field(adaptive_file, fast_rgb):
    h, offset = container.read_header(adaptive_file)
    h.version, h.entropy, h.transform = 3, [], b""
    v3 = bytearray(container.write(h, container.read_streams(adaptive_file, h, offset)))
    # the optional-field mask follows the plane table: set the transform bit in a version 3 file
    mask_at = v3.index(bytes([0]), 12 + 1 + 3 + 1 + 8 + 1 + 2)
    v3[mask_at] = container.OPT_TRANSFORM
    end = len(v3) - sum(h.stream_sizes) - 4
    v3[end:end + 4] = zlib.crc32(v3[end + 4:], zlib.crc32(bytes(v3[:end]))).to_bytes(4, "little")
    with pytest.raises(PixzipError, match="corrupted"):
        api.decompress(bytes(v3), [fast_rgb])


def test_the_formats_levels_are_the_stages(tiny_models):
    assert container.ADAPTIVE_LEVELS == tuple(sorted(adaptive.LEVELS))


# -- the reference stage decodes a native file --------------------------------------------------------------
def test_the_reference_decodes_a_natively_coded_adaptive_file(monkeypatch, capsys):
    from pixzip import zoo
    model = zoo.load_model("pcnn-rgb-v7")
    if not (native.adaptive_available() and native.supports(model.net)):
        pytest.skip("needs the compiled adaptive coder and the shipped model")
    image = images.ImageData("RGB", 7, 6, [_photo_like(6, 7, seed=9)])
    data = api.compress(image, [model], tile=4, effort=5)[0]
    assert container.read_header(data)[0].entropy == [ADAPTIVE]
    monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    monkeypatch.setattr(adaptive_planes, "_NOTICE_GIVEN", [])
    decoded, _ = api.decompress(data)
    assert np.array_equal(decoded.planes[0], image.planes[0])
    assert capsys.readouterr().err.count("Python reference") == 1


def test_the_reference_encoder_writes_the_native_bytes(monkeypatch, fast_rgb):
    plane = _photo_like(6, 7, seed=4)
    fast = adaptive_planes.encode_planes_adaptive(fast_rgb.net, [plane], 4, 1, [8])
    monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    slow = adaptive_planes.encode_planes_adaptive(fast_rgb.net, [plane], 4, 1, [8])
    assert all(np.array_equal(a, b) for a, b in zip(fast[0][0], slow[0][0]))


def _rgb565(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like image at RGB565's depth."""
    return to_rgb565(_photo_like(h, w, seed))


def test_levels_are_coded_in_value_space_and_both_decoders_read_them(monkeypatch, capsys, fast_rgb):
    """A levels plane (RGB565) goes to the adaptive stage as ranks with the network reading their values (stage
    4): the file decodes exactly in the compiled stage and in the reference, and the reference encoder writes
    the compiled one's bytes, chains and stored tiles included."""
    image = images.ImageData("RGB", 20, 18, [_rgb565(18, 20, seed=5)])
    data = api.compress(image, [fast_rgb], tile=8, effort=4)[0]
    header = container.read_header(data)[0]
    assert header.entropy == [container.ADAPTIVE_VALUES]
    assert transforms.TransformRecord.from_bytes(header.transform).describe().startswith("levels")
    assert np.array_equal(api.decompress(data, [fast_rgb])[0].planes[0], image.planes[0])
    record = transforms.TransformRecord.from_bytes(header.transform)
    vmap = ValueMap.of(record.value_tables(0, 3))
    plane = vmap.to_ranks(image.planes[0])
    fewest = min(len(v) for v in vmap.values)                              # a stored tile in a chain:
    plane[:8, :8] = np.random.default_rng(1).integers(0, fewest, (8, 8, 3))   # noise of the ranks used
    fast = adaptive_planes.encode_planes_adaptive(fast_rgb.net, [plane], 8, 9, [6], vmaps=[vmap])[0][0]
    assert container.unframe(fast[0])[1]
    assert np.array_equal(adaptive_planes.decode_planes_adaptive(fast_rgb.net, [(18, 20)], 8, [fast], 9, [6],
                                                                 vmaps=[vmap])[0], plane)
    monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    monkeypatch.setattr(adaptive_planes, "_NOTICE_GIVEN", [])
    slow = adaptive_planes.encode_planes_adaptive(fast_rgb.net, [plane], 8, 9, [6], vmaps=[vmap])[0][0]
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow))
    assert np.array_equal(adaptive_planes.decode_planes_adaptive(fast_rgb.net, [(18, 20)], 8, [fast], 9, [6],
                                                                 vmaps=[vmap])[0], plane)
    assert np.array_equal(api.decompress(data, [fast_rgb])[0].planes[0], image.planes[0])
    assert capsys.readouterr().err.count("Python reference") == 1


def test_a_palette_of_few_colours_is_coded_within_its_range(monkeypatch, capsys, tmp_path):
    """A palette transform's index plane of n < 256 entries goes to stage 4 with its indices read as they are
    (only the range 0..n-1 is new); both decoders read it. A palette of 256 entries keeps stage 1."""
    path = tmp_path / "fast-grey.pxm"
    modelfile.save(make_tiny_model(1, hidden=12, seed=22, blocks=2, stream_bits=16, slope=2, skip_kernel=5)[1], path)
    grey = modelfile.load(path)
    if not adaptive_planes.adaptive_native(grey.net):
        pytest.skip("needs the compiled adaptive coder")
    colours = np.random.default_rng(8).integers(0, 256, (12, 3), dtype=np.uint8)
    blocks = np.random.default_rng(9).integers(0, 12, (6, 5))
    plane = colours[np.kron(blocks, np.ones((5, 4), np.int64))]                 # 30 x 20, 12 colours
    plane[::7, ::3] = colours[(blocks.size + np.arange(plane[::7, ::3].shape[1])) % 12]
    image = images.ImageData("RGB", 20, 30, [np.ascontiguousarray(plane)])
    data = api.compress(image, [grey], tile=8, effort=4)[0]
    h = container.read_header(data)[0]
    record = transforms.TransformRecord.from_bytes(h.transform)
    last = record.steps[-1]                                   # (after the repeats dropped, here 10 colours left)
    assert isinstance(last, transforms.Palette) and last.entries() < 256 and h.entropy == [container.ADAPTIVE_VALUES]
    index = record.forward(image).planes[0]                   # the -e 4 levels for planes of palette indices
    assert h.levels == [17 if plane_options_module.photo_palette(index) else 11]
    assert [t.tolist() for t in record.value_tables(0, 1)] == [list(range(last.entries()))]
    assert np.array_equal(api.decompress(data, [grey])[0].planes[0], image.planes[0])
    monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    assert np.array_equal(api.decompress(data, [grey])[0].planes[0], image.planes[0])
    full = transforms.TransformRecord((transforms.Palette("RGB", np.repeat(np.arange(256, dtype=np.uint8), 3).tobytes()),))
    assert full.value_tables(0, 1) is None


def test_efforts_that_trial_code_their_transforms_try_levels_both_ways(fast_rgb):
    """Value space is the better input on most levels planes but not all (docs/ADAPTIVE.md): the efforts that
    trial-code transforms code such a plane both ways and keep the smaller; the others take value space."""
    plane = _rgb565(8, 9, seed=1)
    image = images.ImageData("RGB", 9, 8, [plane])
    stages = {e: [stage for _, stage, _ in plane_options(fast_rgb, plane, image, EFFORTS[e], [fast_rgb], True)]
              for e in EFFORTS}
    assert stages[4] == stages[5] == stages[7] == [container.ADAPTIVE_VALUES]
    assert stages[6] == stages[8] == [container.ADAPTIVE_VALUES, ADAPTIVE]
    assert stages[9] == [container.ADAPTIVE_VALUES, ADAPTIVE, STATIC]
    assert stages[1] == [STATIC]


def test_planes_of_symbols_take_the_levels_with_value_contexts(fast_rgb):
    """A plane of palette indices or levels' ranks takes the effort's `symbols_level` (11 at -e 4, 12 above:
    contexts on the values, which name colours there); any other plane the effort's level."""
    plane = _rgb565(8, 9, seed=1)
    image = images.ImageData("RGB", 9, 8, [plane])
    for e, (plain, symbols) in {4: (9, 11), 5: (10, 12), 7: (10, 12), 9: (10, 12)}.items():
        for holds_symbols, level in ((False, plain), (True, symbols)):
            got = plane_options(fast_rgb, plane, image, EFFORTS[e], [fast_rgb], False, holds_symbols)
            assert {lv for _, stage, lv in got if stage != STATIC} == {level}
    record = transforms.TransformRecord((transforms.Palette("RGB", np.repeat(np.arange(256, dtype=np.uint8), 3).tobytes()),))
    assert record.holds_symbols(0) and record.value_tables(0, 1) is None       # 256 colours: stage 1, level 11
    assert not transforms.IDENTITY.holds_symbols(0)


def test_palette_indices_of_a_quantised_photograph_take_the_bitwise_levels(fast_rgb):
    """A plane of palette indices that the estimate puts at PHOTO_PALETTE_BITS a sample or more (a quantised
    photograph's) takes the effort's palette_level (17 at -e 4, 18 above: the index's own bits as the decisions);
    a drawing's indices (flat bands) and levels' ranks keep the symbols levels; a file of it round-trips."""
    rng = np.random.default_rng(7)
    photo = np.asarray(Image.fromarray(_photo_like(40, 48, seed=3)).quantize(colors=64,
                                                                          dither=Image.Dither.FLOYDSTEINBERG))[..., None]
    bands = np.repeat(np.repeat(rng.integers(0, 200, (5, 6)), 8, axis=0), 8, axis=1).astype(np.uint8)[..., None]
    assert plane_options_module.photo_palette(photo) and not plane_options_module.photo_palette(bands)
    image = images.ImageData("L", 48, 40, [photo])
    for e, (symbols, bitwise) in {4: (11, 17), 5: (12, 18), 7: (12, 18), 9: (12, 18)}.items():
        for plane, palette, level in ((photo, True, bitwise), (bands, True, symbols), (photo, False, symbols)):
            got = plane_options(fast_rgb, plane, image, EFFORTS[e], [fast_rgb], False, True, palette)
            assert {lv for _, stage, lv in got if stage != STATIC} == {level}
    quantised = Image.fromarray(_photo_like(40, 48, seed=3)).quantize(colors=64, dither=Image.Dither.FLOYDSTEINBERG)
    _, _, header = _round_trip(images.split(quantised), effort=4, tile=16)      # tiles: no one-tile retry (level 7)
    assert header.levels == [17]


def _chart_on_a_gradient(seed: int = 3, h: int = 300, w: int = 400) -> np.ndarray:
    """Three anti-aliased polylines over a smooth radial blend that uses nearly every value of R and B (so no
    transform takes it): a plane the shipped colour network codes in about 0.6 bits a sample."""
    from PIL import ImageDraw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:4 * h, 0:4 * w]
    r = np.hypot(xx - 1.3 * w, yy - 1.7 * h) / (4 * np.hypot(h, w))
    big = Image.fromarray(np.stack([255 * r, 255 * (1 - r), 128 + 127 * np.sin(6 * r)], -1).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(big)
    for k, colour in enumerate([(31, 119, 180), (255, 127, 14), (44, 160, 44)]):
        ys = np.cumsum(rng.normal(0, 30, 12)) + 4 * h * (k + 1) / 4
        draw.line([(4 * w * t / 11, float(y)) for t, y in enumerate(ys)], fill=colour, width=8)
    return np.asarray(big.resize((w, h), Image.LANCZOS))


def test_a_plane_coded_in_few_bits_is_also_coded_at_the_few_bits_levels(monkeypatch, tmp_path):
    """A plane that holds no symbols but that the stage codes in under plane_options.FEW_BITS a sample (a chart,
    not a photograph) is coded at the effort's few_bits_levels too (12 and 13 at -e 5), the smallest kept; the file
    names its level and decodes exactly (Pillow judges what decompress wrote)."""
    from click.testing import CliRunner
    from pixzip import plane_options as options
    from pixzip.cli import main
    pixels = _chart_on_a_gradient()
    image = images.ImageData("RGB", pixels.shape[1], pixels.shape[0], [pixels])
    data = api.compress(image, effort=5)[0]
    header = container.read_header(data)[0]
    assert header.entropy == [ADAPTIVE] and header.levels[0] in (12, 13) and 8 * len(data) < options.FEW_BITS * pixels.size
    Image.fromarray(pixels).save(tmp_path / "chart.png")
    (tmp_path / "chart.pxz").write_bytes(data)
    assert CliRunner().invoke(main, ["decompress", str(tmp_path / "chart.pxz"), "-o", str(tmp_path / "back.png"),
                                     "-q"]).exit_code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")), pixels)
    monkeypatch.setattr(options, "FEW_BITS", 0)          # no retry: level 10, larger
    plain = api.compress(image, effort=5)[0]
    assert container.read_header(plain)[0].levels == [10] and len(plain) > len(data)


@pytest.mark.parametrize("effort", [4, 5])
def test_a_gradient_takes_the_classical_level_and_both_decoders_undo_it(monkeypatch, effort):
    """A radial gradient, which its neighbours predict better than the photograph-trained network: the default
    (after its sample window) and -e 5 code it at level 13 (the median predictor in the network's place), smaller
    than without the few-bits levels, and the compiled stage and the reference (on the torch engine) decode it
    alike."""
    from pixzip import plane_options as options
    pixels = radial_blend(48, 64, 10, 20)
    image = images.ImageData("RGB", 64, 48, [pixels])
    data = api.compress(image, effort=effort)[0]
    assert container.read_header(data)[0].levels == [13]
    assert np.array_equal(api.decompress(data)[0].planes[0], pixels)
    monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    assert np.array_equal(api.decompress(data)[0].planes[0], pixels)
    monkeypatch.undo()
    monkeypatch.setattr(options, "FEW_BITS", 0)
    plain = api.compress(image, effort=effort)[0]
    assert 13 not in container.read_header(plain)[0].levels and len(plain) > len(data)


@needs_c
def test_the_classical_level_reads_no_network_even_an_ensembles():
    """Level 13's walks skip the network's pass: an ensemble writes the bytes one network writes (its outputs unread)
    and decodes them back."""
    from pixzip import zoo
    pixels = radial_blend(40, 56, 8, 15)
    ensemble, one = zoo.load_model("pcnn-rgb-mix-v2").record, zoo.load_model("pcnn-rgb-v8").record
    data = native.encode_tile_adaptive(ensemble, pixels, 13)
    assert data == native.encode_tile_adaptive(one, pixels, 13)
    np.testing.assert_array_equal(native.decode_tile_adaptive(ensemble, data, 40, 56, 13), pixels)


def test_the_few_bits_levels_are_tried_only_below_the_few_bits_and_where_not_taken():
    from pixzip.plane_options import FEW_BITS, retry_options
    plane = np.zeros((100, 100, 3), np.uint8)
    few = int(FEW_BITS * plane.size / 8) - 1
    assert retry_options(("m", ADAPTIVE, 10), few, plane, EFFORTS[5]) == [("m", ADAPTIVE, 12), ("m", ADAPTIVE, 13)]
    values = container.ADAPTIVE_VALUES
    assert retry_options(("m", values, 10), few, plane, EFFORTS[7]) == [("m", values, 12), ("m", values, 13)]
    assert retry_options(("m", ADAPTIVE, 10), few + 2, plane, EFFORTS[5]) == []         # more bits a sample
    assert retry_options(("m", ADAPTIVE, 12), few, plane, EFFORTS[5]) == [("m", ADAPTIVE, 13)]   # taken already
    assert retry_options(("m", STATIC, 0), few, plane, EFFORTS[9]) == []                 # not the adaptive stage
    none = np.zeros(plane.shape[:2], bool)
    assert retry_options(("m", ADAPTIVE, 10), few, plane, EFFORTS[5], none) == []       # every tile LZ or stored


def test_a_few_bits_plane_of_two_values_is_retried_at_the_match_level():
    from pixzip.plane_options import FEW_BITS, retry_options, two_values
    page = np.zeros((100, 100, 1), np.uint8)
    page[::7, :, 0] = 255
    few = int(FEW_BITS * page.size / 8) - 1
    assert two_values(page) and not two_values(np.dstack([page] * 3))
    for effort in (5, 9):
        assert ("m", ADAPTIVE, 15) in retry_options(("m", ADAPTIVE, 10), few, page, EFFORTS[effort])
    assert retry_options(("m", ADAPTIVE, 15), few, page, EFFORTS[5]) == [("m", ADAPTIVE, 12), ("m", ADAPTIVE, 13)]
    three = page.copy()
    three[50, 50, 0] = 128
    assert ("m", ADAPTIVE, 15) not in retry_options(("m", ADAPTIVE, 10), few, three, EFFORTS[5])
    assert retry_options(("m", ADAPTIVE, 10), few + 2, page, EFFORTS[5]) == []          # more bits a sample


def test_images_of_two_values_take_larger_tiles_unless_a_size_is_named(tiny_models):
    """With no tile named, an image whose coded planes each hold at most two values (here a bilevel page: 0 and 255,
    then ranks 0 and 1) is coded in tiles of TEXT_TILE, others in DEFAULT_TILE; a batch of both gives each
    file the bytes it gets alone, and a named size is kept."""
    from pixzip.plane_options import TEXT_TILE
    rng = np.random.default_rng(4)
    page = np.kron(rng.random((9, 12)) < 0.3, np.ones((3, 2), bool))
    bilevel = images.split(Image.fromarray(page))
    photo = images.split(Image.fromarray(_noisy_field(h=20, w=24)))
    models = ()                                    # the tiny defaults
    for effort in (1, 2):
        both = api.compress_many([bilevel, photo], models, effort=effort)
        assert [api.read_header(d).tile for d, _ in both] == [TEXT_TILE, api.DEFAULT_TILE]
        assert [d for d, _ in both] == [api.compress(im, models, effort=effort)[0] for im in (bilevel, photo)]
        assert api.read_header(api.compress(bilevel, models, tile=8, effort=effort)[0]).tile == 8
        assert api.decompress(both[0][0], models)[0].pixel_bytes() == bilevel.pixel_bytes()


def test_grey_text_whose_neighbourhoods_recur_takes_the_match_level_and_larger_tiles():
    """A one-channel plane of anti-aliased words (test_adaptive._word_page) has informative repeats (neighbourhoods that
    recur where the median predictor misses), a photograph's noisy field none: only the first is retried at the
    effort's match level and, with no tile named, also coded in tiles of TEXT_TILE (at efforts with a match level)."""
    from test_adaptive import _word_page
    from pixzip.plane_options import (FEW_BITS, REPEATS_SHARE, TEXT_TILE, auto_tiles, holds, informative_repeats,
                                      page_of_text, retry_options)
    words = _word_page(96, 160, 7, greys=9)
    field = _noisy_field(h=96, w=160)[..., :1]
    assert informative_repeats(words) >= REPEATS_SHARE > informative_repeats(field) == 0.0
    few = int(FEW_BITS * words.size / 8) - 1
    # (level 16 is level 13 and the match: where it is tried, 13 is not)
    assert retry_options(("m", ADAPTIVE, 10), few, words, EFFORTS[5]) == [("m", ADAPTIVE, 12), ("m", ADAPTIVE, 16)]
    assert retry_options(("m", ADAPTIVE, 10), few, field, EFFORTS[5]) == [("m", ADAPTIVE, 12), ("m", ADAPTIVE, 13)]
    assert holds(16, 13) and not holds(13, 16) and not holds(16, 12) and holds(15, 14)
    grey = images.ImageData("L", 160, 96, [words])
    field_image = images.ImageData("L", 160, 96, [np.ascontiguousarray(field)])
    assert page_of_text(grey, EFFORTS[4]) == "repeats" and page_of_text(grey, EFFORTS[1]) == ""
    assert page_of_text(field_image, EFFORTS[4]) == "" and auto_tiles("", 256) == (256,)
    assert auto_tiles("repeats", 256) == (256, TEXT_TILE) and auto_tiles("two values", 256) == (TEXT_TILE,)
    # the plans: the match level only for such a page; no one-tile level (7, 8: small images) on any page of text
    plans = {kind: api._plan_for(EFFORTS[4], kind) for kind in ("repeats", "two values", "")}
    assert (plans["repeats"].match_level, plans["repeats"].one_tile_level) == (EFFORTS[4].match_level, 0)
    assert (plans["two values"].match_level, plans["two values"].one_tile_level) == (0, 0)
    assert (plans[""].match_level, plans[""].one_tile_level) == (0, EFFORTS[4].one_tile_level) != (0, 0)


def _noisy_field(seed: int = 1, h: int = 64, w: int = 96) -> np.ndarray:
    """Smooth colour waves with a photograph's noise (sigma 2): the photo network predicts it better than its
    neighbours' median does."""
    yy, xx = np.mgrid[0:h, 0:w]
    field = np.stack([120 + 40 * np.sin(xx / 17) + 20 * np.cos(yy / 11), 100 + 30 * np.sin((xx + yy) / 23),
                      90 + 25 * np.cos(xx / 9 - yy / 13)], -1)
    return (field + np.random.default_rng(seed).normal(0, 2, field.shape)).round().clip(0, 255).astype(np.uint8)


def test_the_default_retries_a_few_bits_plane_only_where_its_busiest_window_gains():
    """-e 4 codes the plane's busiest window at level 9 and 13 (fresh states) and retries the plane at level 13 only
    where that takes at most SAMPLE_GAIN of level 9's bytes there: a radial gradient (331 against 380 bytes), not
    a smooth field with a photograph's noise (1 349 against 1 301)."""
    from pixzip import zoo
    from pixzip.plane_options import FEW_BITS, SAMPLE_SIDE, retry_options
    m = zoo.load_model("pcnn-rgb-v8")
    for plane, want in ((radial_blend(48, 64, 10, 20), [(m, ADAPTIVE, 13)]), (_noisy_field(), [])):
        few = int(FEW_BITS * plane.size / 8) - 1
        assert retry_options((m, ADAPTIVE, 9), few, plane, EFFORTS[4]) == want
        sizes = adaptive_planes.sample_sizes(m.record, plane, (9, 13), SAMPLE_SIDE)
        assert (sizes[1] <= 0.95 * sizes[0]) == bool(want)
    assert retry_options((m, ADAPTIVE, 13), 10, radial_blend(48, 64, 10, 20), EFFORTS[4]) == []   # taken already


def test_the_default_codes_a_plane_that_few_colours_nearly_fill_at_level_11_too(monkeypatch):
    """A few-bits plane whose 16 commonest colours take at least FLAT_SHARE of its pixels (a chart's fills, here
    the chart on a gradient's lines over flat ground) is also coded at -e 4's flat_level, 11: the values as
    contexts; the radial gradient (many colours) is not. -e 5 tries 12 on every few-bits plane instead."""
    from pixzip import zoo
    from pixzip import plane_options as options
    m = zoo.load_model("pcnn-rgb-v8")
    monkeypatch.setattr(adaptive_planes, "sample_sizes", lambda *a: [100, 100])     # (the window: no gain)
    flat = np.full((60, 80, 3), 250, np.uint8)
    flat[20:24] = (31, 119, 180)
    flat[40:, 30:50] = (255, 127, 14)
    flat[5:8, 5:70] = np.arange(65, dtype=np.uint8)[None, :, None]                # a ramp: 65 more colours
    assert options.flat_share(flat) >= options.FLAT_SHARE > options.flat_share(radial_blend(60, 80, 10, 20))
    few = int(options.FEW_BITS * flat.size / 8) - 1
    assert options.retry_options((m, ADAPTIVE, 9), few, flat, EFFORTS[4]) == [(m, ADAPTIVE, 11)]
    assert options.retry_options((m, ADAPTIVE, 9), few, radial_blend(60, 80, 10, 20), EFFORTS[4]) == []
    assert options.retry_options((m, ADAPTIVE, 11), few, flat, EFFORTS[4]) == []          # taken already
    nowhere = np.zeros(flat.shape[:2], bool)
    nowhere[:30] = True                                                              # only the stage's own tiles
    assert options.flat_share(flat, nowhere) == options.flat_share(flat[:30])
    assert EFFORTS[5].flat_level == 0 and 12 in EFFORTS[5].few_bits_levels


def _noisy_page(seed: int = 4, h: int = 96, w: int = 128) -> np.ndarray:
    """A scanned page in grey: paper at 230 with the scanner's noise (sigma 1.2), and lines of strokes of any grey
    (their blurred edges: every value occurs, so no levels transform takes the page)."""
    rng = np.random.default_rng(seed)
    page = np.full((h, w), 230.0)
    for top in range(8, h - 8, 14):
        strokes = rng.random((7, w - 12)) < 0.35
        page[top:top + 7, 6:w - 6][strokes] = rng.integers(0, 256, strokes.sum())
    return (page + rng.normal(0, 1.2, page.shape)).round().clip(0, 255).astype(np.uint8)[..., None]


def test_a_plane_with_a_background_is_also_coded_with_the_values_as_contexts():
    """A plane coded in more than FEW_BITS a sample, most of whose samples lie in a few neighbouring values (a scanned
    page's noisy paper), is also coded at the effort's background_level (-e 4: 11 for colour, 12 for one channel; 12
    from -e 5); a photograph-like plane, a background that is a gradient (a blurred backdrop), a plane already at that
    level or at a symbols level, and a few-bits plane are not."""
    from pixzip import zoo
    from pixzip import plane_options as options
    m, grey = zoo.load_model("pcnn-rgb-v8"), zoo.load_model("pcnn-gray-v4")
    page, field = _noisy_page(), _noisy_field()   # (0.86 and 0.19 of their samples)
    assert options.background_share(page) >= options.BACKGROUND_SHARE > options.background_share(field)
    many = page.size                                                  # one byte a sample: not few bits
    assert options.retry_options((grey, ADAPTIVE, 9), many, page, EFFORTS[4]) == [(grey, ADAPTIVE, 12)]
    assert options.retry_options((m, ADAPTIVE, 9), many, np.dstack([page] * 3), EFFORTS[4]) == [(m, ADAPTIVE, 11)]
    assert options.retry_options((grey, ADAPTIVE, 10), many, page, EFFORTS[5]) == [(grey, ADAPTIVE, 12)]
    assert options.retry_options((grey, ADAPTIVE, 11), many, page, EFFORTS[4]) == []
    assert options.retry_options((m, ADAPTIVE, 9), many, field, EFFORTS[4]) == []
    backdrop = np.repeat(np.linspace(100, 107.9, 128).astype(np.uint8)[None, :, None], 96, axis=0)   # a gradient
    assert options.background_share(backdrop) == 1.0
    assert options.background_noise(backdrop) < options.BACKGROUND_NOISE <= options.background_noise(page)
    assert options.retry_options((grey, ADAPTIVE, 9), many, backdrop, EFFORTS[4]) == []
    few = int(options.FEW_BITS * page.size / 8) - 1
    only = dataclasses.replace(EFFORTS[4], few_bits_levels=(), flat_level=0, two_values_level=0, match_level=0)
    assert options.retry_options((grey, ADAPTIVE, 9), few, page, only) == []
    assert options.retry_options((grey, ADAPTIVE, 9), many, page, only) == [(grey, ADAPTIVE, 12)]
    assert options.background_share(np.zeros((3, 4, 2), np.uint8)) == 0.0                   # no noise: one value
    assert options.background_share(np.arange(3, dtype=np.uint8).reshape(1, 3, 1)) == 1.0
    assert options.background_share(np.arange(256, dtype=np.uint8).reshape(16, 16, 1)) == 8 / 256


def test_the_default_codes_a_scanned_page_no_larger_for_its_background(monkeypatch):
    """The page's file at -e 4 takes level 12 where that codes it smaller, decodes exactly, and is never larger than
    without the background retry (BACKGROUND_SHARE out of reach)."""
    from pixzip import plane_options as options
    image = images.ImageData("L", 128, 96, [_noisy_page()])
    data = api.compress(image)[0]
    back, header = api.decompress(data)
    assert np.array_equal(back.planes[0], image.planes[0]) and header.levels[0] in (9, 12)
    monkeypatch.setattr(options, "BACKGROUND_SHARE", 1.01)
    plain = api.compress(image)[0]
    assert container.read_header(plain)[0].levels == [9] and len(data) <= len(plain)


def test_a_plane_of_one_colour_in_value_space_codes_nothing_and_decodes(monkeypatch):
    """A solid image that the trial transforms make a palette of one colour, its index plane coded in entropy stage 4
    in one tile of 1024: every sample's range is 0..0, so the stage codes no decision and the stream is a few bytes.
    The decoder's floor on an adaptive stream's length (a bit per 2 840 sub-pixels) held such a stream corrupt, and
    `-e 9` wrote solid images that no pixzip read (session 27's kinds table found it). (Every candidate tried, as
    before session 32: the trials now stop at the first small file, the image's one pixel after its repeats.)"""
    from pixzip.efforts import Effort
    monkeypatch.setattr(importlib.import_module("pixzip.formats.transforms.choose"), "ENOUGH_BYTES", 0)
    image = images.ImageData("RGB", 640, 480, [np.full((480, 640, 3), (200, 30, 90), np.uint8)])
    effort = Effort(models=1, stage=ADAPTIVE, level=9, symbols_level=11, transforms="trial")
    data = api.compress(image, effort=effort)[0]
    header = container.read_header(data)[0]
    assert header.entropy == [container.ADAPTIVE_VALUES] and header.tile == 1024 and len(data) < 100
    back, _ = api.decompress(data)
    assert np.array_equal(back.planes[0], image.planes[0])


def test_the_busiest_window_has_the_most_pixels_unlike_their_neighbours():
    plane = np.zeros((100, 130, 3), np.uint8)
    plane[40:60, 70:90, 1] = np.arange(20, dtype=np.uint8)          # a ramp in one channel: every pixel differs
    assert adaptive_planes.busiest_window(plane, 32) == (32, 64, 32, 32)
    assert adaptive_planes.busiest_window(plane[:20], 32) == (0, 0, 20, 32)    # all flat: the first window
    assert adaptive_planes.busiest_window(plane[45:55, 60:], 32) == (0, 0, 10, 32)
    assert adaptive_planes.busiest_window(plane[45:55, 60:], 8) == (0, 16, 8, 8)
    elsewhere = np.ones((100, 130), bool)
    elsewhere[32:64, 64:96] = False                                  # the ramp's window not among those counted
    plane[90:95, 5:10, 0] = 7                                        # a small square: the busiest left
    assert adaptive_planes.busiest_window(plane, 32, elsewhere) == (64, 0, 32, 32)


def test_the_pixels_the_stage_coded_are_those_of_its_coded_tiles():
    from pixzip.plane_options import coded_pixels
    tiles = [container.frame(b"\x01\x02"), container.frame(b"\x00" * 8, stored=True), container.frame(b"\x03")]
    mask = coded_pixels(tiles, 20, 40, 16)                          # tiles of 16: three across, two down
    assert mask.shape == (20, 40) and mask[:16, :16].all() and not mask[:16, 16:32].any() and mask[:16, 32:].all()
    assert not mask[16:].any()                                       # (the second row's tiles: no streams given)


def test_a_trial_counts_a_candidates_record_once(monkeypatch, fast_rgb):
    """Trial coding (transforms="trial") codes each candidate without its record and transforms.candidate_cost
    adds the record's bytes: the chosen candidate's trial plus its record is the file, to the record's length
    prefix (the record still says which planes are levels, coded in value space)."""
    from pixzip.efforts import Effort
    seen = []
    real = transforms.choose

    def spy(image, try_coding=None, max_trials=None, **options):
        def counted(candidate, record):
            n = try_coding(candidate, record)
            seen.append((record, n))
            return n
        return real(image, counted, max_trials, **options)
    monkeypatch.setattr(transforms, "choose", spy)
    monkeypatch.setattr(importlib.import_module("pixzip.formats.transforms.choose"), "ENOUGH_BYTES", 0)  # all tried
    plane = np.repeat(_rgb565(9, 10, seed=2), 2, axis=1)            # levels, and every column twice
    image = images.ImageData("RGB", 20, 9, [plane])
    effort = Effort(models=1, stage=ADAPTIVE, level=9, transforms="trial", lz_probe=True)
    data = api.compress(image, [fast_rgb], tile=8, effort=effort)[0]
    record = transforms.TransformRecord.from_bytes(container.read_header(data)[0].transform)
    assert not record.is_identity and len(seen) > 2
    trial = dict((r.to_bytes(), n) for r, n in seen)[record.to_bytes()]
    assert 0 < len(data) - (trial + len(record.to_bytes())) <= 3


def test_chains_hold_every_tile_once_in_at_least_two_short_chains():
    for n in range(1, 80):
        chains = adaptive.chains(n)
        assert sorted(t for c in chains for t in c) == list(range(n))
        assert len(chains) == min(n, max(2, -(-n // adaptive.CHAIN_TILES)))
        assert all(len(c) <= adaptive.CHAIN_TILES and c == sorted(c) for c in chains)
    assert adaptive.chains(4) == [[0, 2], [1, 3]] and adaptive.chains(6) == [[0, 2, 4], [1, 3, 5]]


def test_a_chained_level_carries_the_state_and_replays_its_stored_tiles(monkeypatch, fast_rgb):
    """Level 9's tiles form chains (tiles 0, 2 and 1, 3 of a 2 x 2 grid): a tile after the first of its chain
    codes with the state its predecessor left, a stored tile (noise) included, whatever the thread count, and
    both decoders (the compiled one and the reference on the torch engine) replay the chain alike."""
    plane = _photo_like(16, 16, seed=3)
    plane[:8, :8] = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    net = fast_rgb.net
    chained = adaptive_planes.encode_planes_adaptive(net, [plane], 8, 9, [8], threads=2)[0][0]
    assert container.unframe(chained[0])[1] and not any(container.unframe(s)[1] for s in chained[1:])
    assert all(np.array_equal(a, b) for a, b in
               zip(chained, adaptive_planes.encode_planes_adaptive(net, [plane], 8, 9, [8], threads=1)[0][0]))
    with monkeypatch.context() as m:
        m.setitem(adaptive.LEVELS, 9, dataclasses.replace(adaptive.LEVELS[9], chained=False))
        fresh = adaptive_planes.encode_planes_adaptive(net, [plane], 8, 9, [8])[0][0]
    assert np.array_equal(chained[1], fresh[1])                     # the first of its chain
    assert not np.array_equal(chained[2], fresh[2]) and not np.array_equal(chained[3], fresh[3])
    _both_decoders_replay(monkeypatch, net, plane, chained)


def _both_decoders_replay(monkeypatch, net, plane: np.ndarray, streams: list, lz_tiles: bool | None = None):
    """A 16 x 16 plane's level-9 streams in tiles of 8 decode in the compiled stage on one or two threads and in
    the reference, and the reference encoder writes them too."""
    for threads in (1, 2):
        decoded = adaptive_planes.decode_planes_adaptive(net, [(16, 16)], 8, [streams], 9, [8], threads=threads)
        assert np.array_equal(decoded[0], plane)
    monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    monkeypatch.setattr(adaptive_planes, "_NOTICE_GIVEN", [])
    assert np.array_equal(adaptive_planes.decode_planes_adaptive(net, [(16, 16)], 8, [streams], 9, [8])[0], plane)
    slow = adaptive_planes.encode_planes_adaptive(net, [plane], 8, 9, [8], lz_tiles=lz_tiles)[0][0]
    assert all(np.array_equal(a, b) for a, b in zip(streams, slow))


def test_lz_tiles_in_a_chain_are_replayed_by_both_decoders(monkeypatch, fast_rgb):
    """A tile that goes to the plane's LZ stream (entropy/lz.py, LZ tiles; here a repeated pattern, the gate
    opened for the tiny model) still feeds its chain's state: both decoders replay it, the bytes do not depend
    on the thread count, and the reference encoder writes the same."""
    from pixzip.entropy import lz
    monkeypatch.setattr(lz, "_TILE_MAX_BITS", 9.0)
    plane = _photo_like(16, 16, seed=3)
    plane[:8, :8] = np.tile(np.array([[[10, 200, 30], [240, 5, 90]], [[0, 0, 0], [255, 255, 255]]], np.uint8),
                            (4, 4, 1))
    net = fast_rgb.net
    coded = adaptive_planes.encode_planes_adaptive(net, [plane], 8, 9, [8], threads=2, lz_tiles=True)[0][0]
    kinds = [container.unframe_tile(s)[1] for s in coded]
    assert kinds[0] == container.LZ_TILE and kinds[2] == container.CODED          # chain 0, 2: 2 after the LZ tile
    plain = adaptive_planes.encode_planes_adaptive(net, [plane], 8, 9, [8])[0][0]
    assert all(np.array_equal(coded[n], plain[n]) for n, k in enumerate(kinds) if k == container.CODED)
    assert all(np.array_equal(a, b) for a, b in zip(
        coded, adaptive_planes.encode_planes_adaptive(net, [plane], 8, 9, [8], threads=1, lz_tiles=True)[0][0]))
    _both_decoders_replay(monkeypatch, net, plane, coded, lz_tiles=True)


def test_one_worker_codes_on_one_thread(monkeypatch):
    """workers=1 (`-T 1`) encodes and decodes every tile on one thread; the default (0) may take every core."""
    from pixzip import zoo
    model = zoo.load_model("pcnn-rgb-v7")
    if not (native.adaptive_available() and native.supports(model.net)):
        pytest.skip("needs the compiled adaptive coder and the shipped model")
    encoders, decoders = set(), set()

    def spy(f, seen):
        return lambda *a, **k: (seen.add(threading.get_ident()), f(*a, **k))[1]
    monkeypatch.setattr(native, "encode_tile_adaptive", spy(native.encode_tile_adaptive, encoders))
    monkeypatch.setattr(native, "decode_tile_adaptive", spy(native.decode_tile_adaptive, decoders))
    image = images.ImageData("RGB", 40, 36, [_photo_like(36, 40, seed=2)])
    data = api.compress(image, [model], tile=16, effort=4, workers=1)[0]      # nine tiles, three chains
    assert np.array_equal(api.decompress(data, workers=1)[0].planes[0], image.planes[0])
    assert len(encoders) == 1 and len(decoders) == 1
    assert api.compress(image, [model], tile=16, effort=4)[0] == data


def test_models_the_stage_cannot_take_say_so_in_one_line(tiny_models):
    from pixzip import zoo
    lstm = make_tiny_model(3, arch="rowlstm", layers=1)[1]
    why = adaptive_planes.adaptive_refusal(lstm)
    assert why and "\n" not in why
    with pytest.raises(PixzipError, match="PixelCNN"):
        adaptive_planes.encode_planes_adaptive(lstm, [_photo_like(4, 4)], 0, 1, [8])
    # an ensemble whose members share their Laplace tables is taken (session 13: their outputs averaged)
    assert adaptive_planes.adaptive_refusal(zoo.load_model("pcnn-rgb-mix-v1").net) is None


def test_a_plane_of_one_tile_is_also_coded_at_the_trial_level(monkeypatch, fast_rgb):
    """encode_planes_trial: a plane of one tile gets a coding at each level (the second from the same network
    pass, the bytes of a coding at that level alone, in the compiled coder and the reference alike); a plane of
    several tiles only its first level's; every coding decodes at its own level."""
    net = fast_rgb.net
    small, large = _photo_like(12, 10, seed=5), _photo_like(16, 16, seed=6)
    codings = adaptive_planes.encode_planes_trial(net, [small, large], 12, (9, 7), [8, 8], threads=2)
    assert [[c[0] for c in plane] for plane in codings] == [[9, 7], [9]]
    for level, streams, bits in codings[0]:
        alone = adaptive_planes.encode_planes_adaptive(net, [small], 12, level, [8])[0][0]
        assert len(streams) == 1 and np.array_equal(streams[0], alone[0]) and bits == 32.0 * alone[0].size
        assert np.array_equal(adaptive_planes.decode_planes_adaptive(net, [(12, 10)], 12, [streams], level, [8])[0], small)
    assert not np.array_equal(codings[0][0][1][0], codings[0][1][1][0])       # the levels differ
    assert all(np.array_equal(a, b) for a, b in zip(codings[1][0][1], adaptive_planes.encode_planes_adaptive(
        net, [large], 12, 9, [8])[0][0]))
    monkeypatch.setattr(adaptive_planes, "adaptive_native", lambda m: False)
    slow = adaptive_planes.encode_planes_trial(net, [small], 12, (9, 7), [8])
    assert all(np.array_equal(a[1][0], b[1][0]) for a, b in zip(codings[0], slow[0]))


def test_the_encoder_keeps_the_smaller_of_the_one_tile_levels(fast_rgb):
    """An effort with a one-tile level codes a one-tile image at both levels and keeps the smaller (the file
    names the level, and decodes); ties and larger keep the planned level. (With the tiny network level 10
    codes this image smaller than 9, and 9 than 7.)"""
    image = images.ImageData("RGB", 10, 12, [_photo_like(12, 10, seed=8)])
    assert EFFORTS[4].level == 9 and EFFORTS[4].one_tile_level == 7
    size = {level: len(api.compress(image, [fast_rgb], effort=dataclasses.replace(EFFORTS[4], level=level,
                                                                                  one_tile_level=0))[0])
            for level in (7, 9, 10)}
    assert size[10] < size[9] < size[7]
    for trial, chosen in ((10, 10), (7, 9)):
        data = api.compress(image, [fast_rgb], effort=dataclasses.replace(EFFORTS[4], one_tile_level=trial))[0]
        assert container.read_header(data)[0].levels == [chosen] and len(data) == size[chosen]
        assert np.array_equal(api.decompress(data, [fast_rgb])[0].planes[0], image.planes[0])
