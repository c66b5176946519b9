"""pixzip.transforms: every candidate chain inverts exactly, records parse back to themselves and a
corrupt record is refused with PixzipError (never another exception, never a wrong image silently),
and the stored fallback's bit packing is exact."""

from __future__ import annotations

import importlib
import io
import lzma
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pixzip.formats import images
from pixzip.formats import stored as S
from pixzip.formats import transforms as T
from pixzip.formats.transforms import palette, steps
from pixzip.formats.transforms.choose import ENOUGH_BYTES, _laplace_bits, med_residuals, _touching
from pixzip.errors import PixzipError
from pixzip.formats.images import ImageData
from pixzip.formats.varint import varint

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- images of every mode with the structures the transforms look for ---------------------------------
def _colours(rng, n: int, k: int) -> np.ndarray:
    """n distinct colours of k channels (n <= 256**k)."""
    keys = rng.choice(256 ** k, size=n, replace=False) if 256 ** k <= 1 << 20 else \
        np.unique(rng.integers(0, 256 ** k, size=4 * n))[:n]
    return np.stack([(keys >> (8 * c)) & 255 for c in range(k)], axis=1).astype(np.uint8)


def make_image(mode: str, h: int, w: int, kind: str, n: int, seed: int) -> ImageData:
    """A `mode` image of h x w whose pixels are: random; drawn from n colours; grey (RGB modes);
    n levels per channel; or with constant alpha."""
    rng = np.random.default_rng(seed)
    layout = T.LAYOUTS[mode]
    k = sum(layout)
    if mode == "1":
        pixels = rng.integers(0, 2, (h, w, 1), dtype=np.uint8) * 255
    elif mode == "P":
        pixels = rng.integers(0, min(n, 256), (h, w, 1)).astype(np.uint8)
    elif kind == "colours":
        table = _colours(rng, min(n, 256 ** k, h * w), k)
        which = np.concatenate([np.arange(len(table)), rng.integers(0, len(table), h * w - len(table))])
        pixels = table[rng.permutation(which).reshape(h, w)]          # every colour used
    elif kind == "levels":
        table = np.sort(rng.choice(256, size=min(n, 256), replace=False)).astype(np.uint8)
        pixels = table[rng.integers(0, len(table), (h, w, k))]
    else:
        pixels = rng.integers(0, 256, (h, w, k), dtype=np.uint8)
    if kind == "grey" and mode in ("RGB", "RGBA"):
        pixels[..., 1] = pixels[..., 0]
        pixels[..., 2] = pixels[..., 0]
    if kind == "const-alpha" and mode in ("LA", "RGBA"):
        pixels[..., -1] = n % 256
    if kind == "repeats":               # runs of equal rows and columns (pixel art scaled up, flat bands)
        pixels = pixels[np.sort(rng.integers(0, h, h))][:, np.sort(rng.integers(0, w, w))]
    splits = np.cumsum(layout)[:-1]
    d = ImageData(mode, w, h, [np.ascontiguousarray(p) for p in np.split(pixels, splits, axis=2)],
                  icc=b"icc-profile" if seed % 3 == 0 else b"")
    if mode == "P":
        entries = int(rng.integers(1, 257))
        d.palette_mode = "RGBA" if seed % 2 else "RGB"
        d.palette = rng.integers(0, 256, entries * len(d.palette_mode), dtype=np.uint8).tobytes()
        d.transparency = [b"", b"I\x03\x00", b"B" + bytes(range(min(entries, 40)))][seed % 3]
    return d


images_strategy = st.builds(
    make_image,
    mode=st.sampled_from(["L", "LA", "RGB", "RGBA", "P", "1"]),
    h=st.integers(1, 24), w=st.integers(1, 24),
    kind=st.sampled_from(["random", "colours", "grey", "levels", "const-alpha", "repeats"]),
    n=st.sampled_from([1, 2, 3, 17, 64, 128, 255, 256, 257, 300]),
    seed=st.integers(0, 2 ** 31))


def assert_same_image(a: ImageData, b: ImageData) -> None:
    assert (a.mode, a.width, a.height) == (b.mode, b.width, b.height)
    assert [p.shape for p in a.planes] == [p.shape for p in b.planes]
    assert all(p.dtype == np.uint8 for p in b.planes)
    assert all(np.array_equal(p, q) for p, q in zip(a.planes, b.planes))
    assert (a.icc, a.palette_mode, a.palette, a.transparency) == (b.icc, b.palette_mode, b.palette, b.transparency)


def assert_codable(image: ImageData) -> None:
    """What api.compress takes: a known mode, its plane layout, uint8 planes of the image's size."""
    assert image.mode in T.LAYOUTS
    assert tuple(p.shape[2] for p in image.planes) == T.LAYOUTS[image.mode]
    assert all(p.dtype == np.uint8 and p.shape[:2] == (image.height, image.width) for p in image.planes)


# -- exactness -----------------------------------------------------------------------------------------
@SETTINGS
@given(images_strategy)
def test_every_candidate_inverts_exactly_through_its_bytes(image):
    for coded, record in T.candidates(image):
        assert_codable(coded)
        parsed = T.TransformRecord.from_bytes(record.to_bytes())
        assert parsed == record
        if not record.is_identity:
            assert parsed.original_mode == image.mode and parsed.coded_mode == coded.mode
        assert_same_image(image, parsed.inverse(coded))
        assert_same_image(coded, record.forward(image))        # forward is deterministic


@SETTINGS
@given(images_strategy)
def test_choose_inverts_exactly_with_estimate_and_with_a_trial_coder(image):
    for coder in (None, lambda im, record: zlib.compress(im.pixel_bytes(), 1)):
        coded, record = T.choose(image, coder)
        assert_codable(coded)
        assert_same_image(image, T.TransformRecord.from_bytes(record.to_bytes()).inverse(coded))


@SETTINGS
@given(images_strategy)
def test_estimates_in_threads_choose_as_one_thread(image):
    for check_listed in (False, True):
        assert T.choose(image, None, None, check_listed, threads=3)[1] == T.choose(image, None, None, check_listed)[1]


def test_choose_takes_the_cheapest_candidate_by_trial_including_the_record():
    image = make_image("RGB", 16, 16, "colours", 5, 1)
    options = T.candidates(image)
    assert len(options) >= 3
    sizes = {(c.mode, c.pixel_bytes()): 1000 - 10 * i for i, (c, _) in enumerate(options)}   # later: cheaper
    coded, record = T.choose(image, lambda im, record: sizes[(im.mode, im.pixel_bytes())])
    assert record == options[-1][1]
    # a record that costs more than it saves loses: the identity wins when coding costs the same
    coded, record = T.choose(image, lambda im, record: 1000)
    assert record.is_identity


def test_trials_stop_once_a_file_is_small_enough():
    """Trial coding goes in the estimate's order and stops at a file of ENOUGH_BYTES (a flat image's eight
    network passes took 30 s for 60 bytes); above it every candidate is tried, whatever the order."""
    image = make_image("RGB", 16, 16, "colours", 5, 1)
    options = T.candidates(image)
    by_estimate = [options[i][1] for i in np.argsort([T.candidate_cost(c, r) for c, r in options], kind="stable")]
    tried = []

    def coder(size):
        return lambda im, record: tried.append(record) or size
    _, record = T.choose(image, coder(1))                              # (plus its record: still small)
    assert tried == by_estimate[:1] and record == by_estimate[0]
    tried.clear()
    _, record = T.choose(image, coder(ENOUGH_BYTES + 1))
    assert tried == by_estimate and record.is_identity                 # the same size: the record decides
    tried.clear()
    cheapest = by_estimate[-1]                                         # found last, kept
    _, record = T.choose(image, lambda im, r: tried.append(r) or (1 if r == cheapest else 10 ** 4))
    assert record == cheapest and tried == by_estimate


def test_mode_1_becomes_the_l_image_of_its_samples_and_takes_the_l_steps():
    image = make_image("1", 5, 7, "random", 2, 0)
    image.planes[0][1] = image.planes[0][0]                           # a repeated row
    options = T.candidates(image)
    assert all(r.steps[0] == T.GreyFromBilevel("1") and c.mode == "L" for c, r in options)
    assert {tuple(_kinds(r)[1:]) for _, r in options} == {(), (T.Levels,), (T.DropRepeats,),
                                                          (T.DropRepeats, T.Levels)}
    for coded, record in options:
        assert_same_image(image, T.TransformRecord.from_bytes(record.to_bytes()).inverse(coded))
    ranks = next(c for c, r in options if _kinds(r) == [T.GreyFromBilevel, T.Levels])
    assert np.array_equal(ranks.planes[0], image.planes[0] // 255)   # levels: 0 and 255 as ranks 0 and 1


def test_grey_from_bilevel_refuses_other_samples_and_modes():
    record = T.TransformRecord((T.GreyFromBilevel("1"),))
    grey = ImageData("L", 3, 2, [np.array([[[0], [255], [0]], [[255], [7], [0]]], np.uint8)])
    with pytest.raises(PixzipError, match="neither 0 nor 255"):
        record.inverse(grey)
    body = bytes([1, T.GreyFromBilevel.KIND, T.MODE_CODES.index("L")])
    with pytest.raises(PixzipError, match="corrupted"):
        T.TransformRecord.from_bytes(bytes([T.RECORD_FORMAT, 0]) + body)


def test_a_step_of_a_later_pixzip_asks_for_an_upgrade():
    body = bytes([1, 200, T.MODE_CODES.index("L")])
    with pytest.raises(PixzipError, match="transform step 200, which this pixzip does not know"):
        T.TransformRecord.from_bytes(bytes([T.RECORD_FORMAT, 0]) + body)


# -- detections -------------------------------------------------------------------------------------------
def _records(image):
    return [r for _, r in T.candidates(image)]


def _kinds(record):
    return [type(s) for s in record.steps]


def test_grey_rgb_becomes_one_grey_plane_in_every_candidate():
    image = make_image("RGB", 9, 11, "grey", 0, 4)
    for coded, record in T.candidates(image):
        assert coded.mode == "L" and record.steps[0] == T.GreyFromRGB("RGB")
    rgba = make_image("RGBA", 9, 11, "grey", 0, 4)
    assert T.candidates(rgba)[0][0].mode == "LA"


def test_one_differing_pixel_is_not_grey():
    image = make_image("RGB", 9, 11, "grey", 0, 4)
    image.planes[0][8, 10, 2] ^= 1
    assert all(T.GreyFromRGB not in _kinds(r) for r in _records(image))


def test_constant_alpha_is_dropped_and_its_value_kept():
    image = make_image("RGBA", 6, 5, "const-alpha", 255, 2)
    coded, record = T.candidates(image)[0]
    assert coded.mode == "RGB" and record.steps[0] == T.DropConstantPlane("RGBA", 1, b"\xff")
    la = make_image("LA", 6, 5, "const-alpha", 7, 2)
    assert T.candidates(la)[0][0].mode == "L"


def test_fully_constant_rgba_keeps_its_colour_plane():
    colour = np.broadcast_to(np.array([9, 10, 11], np.uint8), (3, 4, 3))
    image = ImageData("RGBA", 4, 3, [colour.copy(), np.full((3, 4, 1), 200, np.uint8)])
    coded, record = T.candidates(image)[0]
    assert coded.mode == "RGB" and len(coded.planes) == 1
    assert_same_image(image, record.inverse(coded))


def test_levels_are_ranks_in_a_monotone_table():
    six_bit = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8, 1)
    image = ImageData("L", 8, 8, [six_bit])
    (_, base), (coded, record) = T.candidates(image)
    assert base.is_identity and record.steps == (T.Levels("L", 0, False, (steps.levels_bitmap(six_bit.reshape(-1)),)),)
    assert np.array_equal(coded.planes[0], np.arange(64, dtype=np.uint8).reshape(8, 8, 1))


def test_all_256_levels_give_no_levels_candidate():
    image = ImageData("L", 16, 16, [np.arange(256, dtype=np.uint8).reshape(16, 16, 1)])
    assert _records(image) == [T.IDENTITY]


def test_shared_levels_keep_channels_on_one_scale():
    rng = np.random.default_rng(0)
    r = rng.integers(0, 32, (8, 8)) * 8
    g = rng.integers(0, 64, (8, 8)) * 4
    image = ImageData("RGB", 8, 8, [np.stack([r, g, r], axis=2).astype(np.uint8)])
    shared = next(c for c, rec in T.candidates(image) if any(getattr(s, "shared", False) for s in rec.steps))
    union = np.unique(np.concatenate([r.reshape(-1), g.reshape(-1)]))
    assert np.array_equal(shared.planes[0][..., 0], np.searchsorted(union, r))


@pytest.mark.parametrize("n", [1, 2, 256])
def test_up_to_256_colours_give_a_luminance_sorted_palette(n):
    image = make_image("RGB", 20, 20, "colours", n, 3)
    palettes = [(c, r) for c, r in T.candidates(image) if _kinds(r) == [T.Palette]]
    assert 1 <= len(palettes) <= 2
    coded, record = palettes[0]                                 # luminance first, then neighbour order
    table = record.steps[-1].table().astype(np.int64)
    luminance = table @ np.array([299, 587, 114])
    assert len(table) == len(np.unique(image.planes[0].reshape(-1, 3), axis=0))
    assert np.all(np.diff(luminance) >= 0)
    assert coded.mode == "L" and int(coded.planes[0].max()) < len(table)


def test_257_colours_give_no_palette():
    image = make_image("RGB", 20, 20, "colours", 257, 3)
    assert len(np.unique(image.planes[0].reshape(-1, 3), axis=0)) == 257
    assert all(T.Palette not in _kinds(r) for r in _records(image))
    assert T.distinct_colours(image) is None


def test_palette_colours_are_stored_as_differences():
    step = T.Palette("RGB", bytes([250, 3, 0, 4, 200, 0]))
    assert step.payload() == bytes([1, 250, 3, 0, 10, 197, 0])
    record = T.TransformRecord((step,))
    assert T.TransformRecord.from_bytes(record.to_bytes()) == record


def _rare_colours_image() -> ImageData:
    """300 colours on 40 x 40 pixels, 50 of them once each: past a palette, with rare colours to list or escape."""
    rng = np.random.default_rng(1)
    table = _colours(rng, 300, 3)
    which = np.concatenate([np.arange(300), rng.integers(0, 250, 40 * 40 - 300)])
    return ImageData("RGB", 40, 40, [table[rng.permutation(which).reshape(40, 40)]])


def test_near_palette_lists_the_pixels_of_rare_colours():
    image = _rare_colours_image()
    coded, record = next((c, r) for c, r in T.candidates(image) if _kinds(r) == [T.NearPalette])
    step = record.steps[0]
    listed = np.frombuffer(step.positions, "<u4")
    pixels = image.planes[0].reshape(-1, 3)
    in_table = {tuple(c) for c in step.table().tolist()}
    assert len(step.table()) == 256 and 0 < len(listed) <= 44
    assert sorted(listed.tolist()) == [i for i, p in enumerate(pixels.tolist()) if tuple(p) not in in_table]
    assert_same_image(image, T.TransformRecord.from_bytes(record.to_bytes()).inverse(coded))
    small = steps.derived(coded, "L", [coded.planes[0][:20]])
    small.height = 20
    with pytest.raises(PixzipError, match="outside"):
        record.inverse(small)


def test_escape_palette_marks_rare_colours_in_the_index_plane():
    """Past 256 colours the 255 commonest take indices 0..254 and every other pixel the escape, 255; the escaped
    pixels' colours are in the record in raster order, and a decoded plane with another number of escapes is
    refused."""
    image = _rare_colours_image()
    coded, record = next((c, r) for c, r in T.candidates(image) if _kinds(r) == [T.EscapePalette])
    step = record.steps[0]
    pixels = image.planes[0].reshape(-1, 3)
    in_table = {tuple(c) for c in step.table().tolist()}
    escaped = [i for i, p in enumerate(pixels.tolist()) if tuple(p) not in in_table]
    assert len(step.table()) == 255 and step.entries() == 256 and record.lists_pixels and record.escapes
    assert np.flatnonzero(coded.planes[0].reshape(-1) == 255).tolist() == escaped
    assert step.exact == pixels[escaped].tobytes()
    assert_same_image(image, T.TransformRecord.from_bytes(record.to_bytes()).inverse(coded))
    fewer = coded.planes[0].copy()
    fewer.reshape(-1)[escaped[0]] = 0
    with pytest.raises(PixzipError, match="escapes for"):
        record.inverse(steps.derived(coded, "L", [fewer]))
    body = bytes([1, T.EscapePalette.KIND, T.MODE_CODES.index("RGB")]) + T.Palette("RGB", np.repeat(
        np.arange(256, dtype=np.uint8), 3).tobytes()).payload() + bytes([0])
    with pytest.raises(PixzipError, match="256 colours"):
        T.TransformRecord.from_bytes(bytes([T.RECORD_FORMAT, 0]) + body)


def test_rgba_palette_restores_alpha():
    image = make_image("RGBA", 12, 12, "colours", 40, 5)
    coded, record = next((c, r) for c, r in T.candidates(image) if T.Palette in _kinds(r))
    assert record.steps[-1].table().shape[1] == 4
    assert_same_image(image, record.inverse(coded))


def _p_image(seed=0, used=(3, 9, 200, 7), entries=256, transparency=b"B\x00\x80"):
    rng = np.random.default_rng(seed)
    index = np.array(used, np.uint8)[rng.integers(0, len(used), (10, 13))]
    d = ImageData("P", 13, 10, [index[..., None]], palette_mode="RGB",
                  palette=rng.integers(0, 256, 3 * entries, dtype=np.uint8).tobytes(), transparency=transparency)
    return d


def test_p_mode_ranks_used_indices_by_luminance_and_comes_back_identical():
    image = _p_image()
    (_, identity), (coded, record) = T.candidates(image)[:2]
    assert identity.is_identity
    step = record.steps[0]
    assert sorted(step.order) == [3, 7, 9, 200] and coded.mode == "L" and int(coded.planes[0].max()) == 3
    colours = palette.palette_colours("RGB", image.palette)[list(step.order)].astype(np.int64)
    assert np.all(np.diff(colours @ np.array([299, 587, 114])) >= 0)
    back = T.TransformRecord.from_bytes(record.to_bytes()).inverse(coded)
    assert_same_image(image, back)
    # the identical P file: same palette order, same indices, same transparency
    a, b = io.BytesIO(), io.BytesIO()
    images.merge(image).save(a, "PNG")
    images.merge(back).save(b, "PNG")
    assert a.getvalue() == b.getvalue()


def test_p_mode_indices_past_the_palette_end_still_invert():
    image = _p_image(used=(0, 5, 250), entries=4, transparency=b"I\x05\x00")
    for coded, record in T.candidates(image):
        assert_same_image(image, T.TransformRecord.from_bytes(record.to_bytes()).inverse(coded))


def test_real_p_file_round_trips_through_pillow():
    im = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 5, "P")
    im.putpalette(bytes(range(255, 255 - 15, -1)))
    image = images.split(im)
    for coded, record in T.candidates(image):
        assert_same_image(image, record.inverse(coded))


def test_repeated_rows_and_columns_are_dropped_and_restored():
    small = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(small, 4, axis=0), 3, axis=1)          # pixel art scaled 3x4
    image = ImageData("RGB", 21, 20, [big])
    coded, record = next((c, r) for c, r in T.candidates(image) if _kinds(r) == [T.DropRepeats])
    assert (coded.width, coded.height) == (7, 5) and np.array_equal(coded.planes[0], small)
    assert record.original_size(7, 5) == (21, 20)
    assert_same_image(image, T.TransformRecord.from_bytes(record.to_bytes()).inverse(coded))
    with pytest.raises(PixzipError, match="limit"):
        record.inverse(coded, max_pixels=419)
    with pytest.raises(PixzipError, match="does not fit"):
        record.inverse(steps.derived(image, "RGB", [big]))


def test_no_repeats_no_candidate_and_tiny_images():
    image = ImageData("L", 4, 1, [np.array([1, 2, 3, 4], np.uint8).reshape(1, 4, 1)])
    assert all(T.DropRepeats not in _kinds(r) for r in _records(image))
    for h, w in ((1, 1), (1, 5), (6, 1)):
        image = ImageData("L", w, h, [np.zeros((h, w, 1), np.uint8)])
        for coded, record in T.candidates(image):
            assert_same_image(image, record.inverse(coded))


def test_repeats_record_with_a_repeating_first_row_or_padding_is_refused():
    step = T.DropRepeats("L", 3, 2, bytes([0b01100000]), bytes([0b10000000]))
    body = bytes([1, T.DropRepeats.KIND, 0]) + step.payload()
    with pytest.raises(PixzipError, match="flags"):
        T.TransformRecord.from_bytes(bytes([T.RECORD_FORMAT, 0]) + body)
    step = T.DropRepeats("L", 3, 2, bytes([0b10100001]), bytes([0b10000000]))
    with pytest.raises(PixzipError, match="flags"):
        T.TransformRecord.from_bytes(bytes([T.RECORD_FORMAT, 0, 1, T.DropRepeats.KIND, 0]) + step.payload())


def test_neighbour_order_puts_touching_colours_side_by_side():
    # stripes dark-bright-dark-bright... next to a mid grey block: luminance order separates the
    # stripes' two colours by the grey; neighbour order keeps them adjacent
    stripes = np.tile(np.array([0, 200], np.uint8), 8)[None, :].repeat(8, axis=0)
    plane = np.concatenate([stripes, np.full((8, 16), 100, np.uint8)], axis=0)
    rgb = np.repeat(plane[..., None], 3, axis=2)
    rgb[..., 2] = 7                                              # not grey: a palette image
    image = ImageData("RGB", 16, 16, [rgb])
    orders = [r.steps[-1].table()[:, 0].tolist() for _, r in T.candidates(image) if _kinds(r) == [T.Palette]]
    assert orders == [[0, 100, 200], [0, 200, 100]]


@SETTINGS
@given(n=st.integers(1, 256), seed=st.integers(0, 2 ** 31))
def test_neighbour_order_is_a_permutation_starting_at_0(n, seed):
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, (9, 11))
    path = T.neighbour_order(index, rng.integers(0, 256, (n, 3), dtype=np.uint8))
    assert path[0] == 0 and sorted(path.tolist()) == list(range(n))


def _neighbour_order_reference(index, colours):
    """neighbour_order as first written (the weights masked afresh each step): the faster loop must agree."""
    n = len(colours)
    pairs = np.zeros(n * n, np.int64)
    for a, b in ((index[:, 1:], index[:, :-1]), (index[1:], index[:-1])):
        pairs += np.bincount((a.astype(np.int64) * n + b).reshape(-1), minlength=n * n)
    touch = pairs.reshape(n, n) + pairs.reshape(n, n).T
    np.fill_diagonal(touch, 0)
    c = colours.astype(np.int64)
    used = np.zeros(n, bool)
    path = [0]
    used[0] = True
    for _ in range(n - 1):
        end = path[-1]
        weight = np.where(used, -1, touch[end])
        if weight.max() > 0:
            nxt = int(np.argmax(weight))
        else:
            nxt = int(np.argmin(np.where(used, np.iinfo(np.int64).max, ((c - c[end]) ** 2).sum(axis=1))))
        path.append(nxt)
        used[nxt] = True
    return np.array(path, np.int64)


@SETTINGS
@given(n=st.integers(1, 256), side=st.integers(1, 40), levels=st.sampled_from([2, 4, 256]),
       seed=st.integers(0, 2 ** 31))
def test_neighbour_order_matches_the_plain_loop(n, side, levels, seed):
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, (side, side + 3))           # small planes: many colours touch none (the fallback)
    colours = (rng.integers(0, levels, (n, 3)) * (255 // (levels - 1))).astype(np.uint8)   # equal distances
    assert np.array_equal(T.neighbour_order(index, colours), _neighbour_order_reference(index, colours))


@SETTINGS
@given(n=st.integers(1, 256), h=st.integers(1, 60), w=st.integers(1, 60), seed=st.integers(0, 2 ** 31))
def test_touching_counted_in_a_table_or_from_the_pairs_agree(n, h, w, seed):
    index = np.random.default_rng(seed).integers(0, n, (h, w)).astype(np.uint8)
    assert _touching(index, n, dense=True) == _touching(index, n, dense=False)


def _nearest_reference(pixels, table):
    """Every pixel against every table colour in int64 (ties: the lowest index)."""
    d = ((pixels[:, None, :].astype(np.int64) - table[None].astype(np.int64)) ** 2).sum(2)
    return np.argmin(d, axis=1)


@SETTINGS
@given(k=st.integers(1, 4), levels=st.sampled_from([2, 3, 16, 256]), n=st.integers(1, 400),
       m=st.integers(1, 256), shared=st.booleans(), seed=st.integers(0, 2 ** 31))
def test_nearest_matches_every_distance(k, levels, n, m, shared, seed):
    """nearest's shortcuts (a listed colour is its own nearest, int32 per channel) give the int64
    distances' answer, ties and repeated table colours included."""
    rng = np.random.default_rng(seed)
    step = 255 // (levels - 1)
    pixels = (rng.integers(0, levels, (n, k)) * step).astype(np.uint8)
    table = (rng.integers(0, levels, (m, k)) * step).astype(np.uint8)
    if shared:
        table[:m // 2] = pixels[rng.integers(0, n, m // 2)]
    assert np.array_equal(palette.nearest(pixels, table), _nearest_reference(pixels, table))
    index, tied = palette.nearest(pixels, table, ties=True)
    d = ((pixels[:, None, :].astype(np.int64) - table[None].astype(np.int64)) ** 2).sum(2)
    assert np.array_equal(index, _nearest_reference(pixels, table))
    assert np.array_equal(tied, (d == d.min(axis=1, keepdims=True)).sum(axis=1) > 1)


def test_near_palette_orders_resolve_equal_distances_in_their_own_order():
    """The chooser derives the neighbour-ordered NearPalette's index plane from the luminance one's
    search: a pixel halfway between two palette colours takes the one earlier in each order."""
    rng = np.random.default_rng(3)
    even = np.arange(0, 256, 2)
    zero = np.zeros_like(even)
    frequent = np.concatenate([np.stack([even, zero, zero], 1), np.stack([even, zero + 100, zero], 1)])
    halfway = np.stack([even[:-1] + 1, zero[:-1], zero[:-1]], 1)          # as near to v - 1 as to v + 1
    pixels = np.concatenate([np.repeat(frequent, 12, axis=0), halfway])[rng.permutation(3199)][:56 * 57]
    image = ImageData("RGB", 57, 56, [pixels.reshape(56, 57, 3).astype(np.uint8)])
    near = [(c, r) for c, r in T.candidates(image) if _kinds(r) == [T.NearPalette]]
    assert len(near) == 2
    for coded, record in near:
        assert_same_image(coded, record.forward(image))
    path = [int(np.flatnonzero((near[0][1].steps[0].table() == row).all(1))[0]) for row in near[1][1].steps[0].table()]
    rank = np.empty(256, np.int64)
    rank[path] = np.arange(256)
    moved = rank[near[0][0].planes[0]] != near[1][0].planes[0]
    assert moved.any()                                  # some halfway pixels pick the other colour


def test_nearest_past_one_block_of_distinct_colours():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (9000, 3), dtype=np.uint8)         # > 4096 distinct colours: two blocks
    table = np.concatenate([pixels[:100], rng.integers(0, 256, (156, 3), dtype=np.uint8)])
    assert np.array_equal(palette.nearest(pixels, table), _nearest_reference(pixels, table))


@pytest.mark.parametrize("gap", [0, 127, 128, 300])
def test_near_palette_payload_writes_each_gap_as_a_varint(gap):
    positions = np.cumsum(np.array([3, gap + 1, 1, 5])).astype("<u4")
    step = T.NearPalette("RGB", bytes(range(6)), positions.tobytes(), bytes(12))
    gaps = np.diff(positions.astype(np.int64), prepend=-1) - 1
    expected = palette.Palette.payload(step) + varint(4) + b"".join(varint(g) for g in gaps.tolist()) + bytes(12)
    assert step.payload() == expected
    assert T.TransformRecord.from_bytes(T.TransformRecord((step,)).to_bytes()).steps[0] == step


def test_max_trials_codes_only_the_best_by_estimate():
    image = make_image("RGB", 16, 16, "colours", 5, 1)
    coded_ones = []
    T.choose(image, lambda im, record: coded_ones.append(im) or 1000, max_trials=2)
    assert len(coded_ones) == 2 < len(T.candidates(image))
    best_by_estimate = T.choose(image)[1]
    coded_ones.clear()
    _, record = T.choose(image, lambda im, record: coded_ones.append(im) or 1000, max_trials=1)
    assert len(coded_ones) == 1 and record == best_by_estimate


def test_max_trials_also_codes_the_best_escape_palette():
    """The estimate misjudges an escape palette's index plane: where one is a candidate, the trial levels code the
    best of them beside their best by estimate."""
    choose_module = importlib.import_module("pixzip.formats.transforms.choose")
    image = _rare_colours_image()
    options = T.candidates(image)
    for penalty in (0, 10**6):          # the estimate's own ranking, then one that puts every escape palette last
        def cost(option):
            return T.candidate_cost(*option) + penalty * option[1].escapes
        ranked = sorted(options, key=cost)
        tried = []
        with pytest.MonkeyPatch.context() as m:
            m.setattr(choose_module, "candidate_cost", lambda coded, record, try_coding=None:
                      (tried.append(record) or 1000) if try_coding else cost((coded, record)))
            T.choose(image, lambda im, record: 1000, max_trials=1)
        best_escape = next(r for _, r in ranked if r.escapes)
        assert set(tried) == {ranked[0][1], best_escape} and len(tried) == 1 + (not ranked[0][1].escapes)


def test_the_estimate_is_trusted_where_its_best_lists_no_pixels():
    """The effort levels that rank by estimate (check_listed) code no trial when the estimate's best lists no pixels."""
    image = make_image("RGB", 16, 16, "colours", 5, 1)
    coded_ones = []
    _, record = T.choose(image, lambda im, record: coded_ones.append(im) or 100, check_listed=True)
    assert not record.lists_pixels and record == T.choose(image)[1] and coded_ones == []


def test_the_estimate_is_checked_by_trial_where_its_best_lists_pixels(monkeypatch):
    """Where the estimate's best is a near-palette (its listed pixels cost exact bytes in the record, which the
    estimate's inflated plane bits undervalue), the best few by the estimate and the best that lists no pixels (here
    the estimate's last) are trial-coded and the cheapest kept."""
    choose_module = importlib.import_module("pixzip.formats.transforms.choose")
    image = _rare_colours_image()
    # an estimate that prefers index planes (as it does on anti-aliased charts)
    monkeypatch.setattr(choose_module, "estimate_bits", lambda im: 100.0 if im.mode == "L" else 1e6)
    assert T.choose(image)[1].lists_pixels
    coded_ones = []
    coded, record = T.choose(image, lambda im, record: coded_ones.append(record) or (5 if im.mode == "RGB" else 50),
                             check_listed=True)
    listing = sum(r.lists_pixels for _, r in T.candidates(image))
    # the estimate's best few, the best that lists none, and the best escape palette if not among the few
    best = sorted(T.candidates(image), key=lambda option: T.candidate_cost(*option))[:choose_module.CHECKED_TRIALS]
    escape_apart = not any(r.escapes for _, r in best)
    assert listing >= choose_module.CHECKED_TRIALS
    assert len(coded_ones) == choose_module.CHECKED_TRIALS + 1 + escape_apart and sum(r.escapes for r in coded_ones) == 1
    assert sum(not r.lists_pixels for r in coded_ones) == 1 and not record.lists_pixels
    assert_same_image(image, record.inverse(coded))
    _, record = T.choose(image, lambda im, record: 10**6 if im.mode == "RGB" else 5, check_listed=True)
    assert record.lists_pixels                                       # a trial that agrees keeps the near-palette


# -- records: strict parsing ---------------------------------------------------------------------------
def _all_records():
    out = []
    for mode, kind, n, size in [("RGBA", "colours", 30, 8), ("RGB", "levels", 64, 8), ("LA", "const-alpha", 3, 8),
                                ("RGBA", "grey", 0, 8), ("P", "random", 50, 8), ("L", "levels", 2, 8),
                                ("RGB", "repeats", 0, 8), ("P", "repeats", 9, 8), ("RGB", "colours", 300, 18),
                                ("1", "random", 2, 8)]:
        image = make_image(mode, size, size + 1, kind, n, 7)
        out += [(c, r) for c, r in T.candidates(image) if not r.is_identity]
    return out


def test_fixture_covers_every_step_kind():
    kinds = {type(s) for _, r in _all_records() for s in r.steps}
    assert kinds == set(T.STEP_KINDS.values())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_records_are_refused_or_invert_without_crashing(data):
    records = _all_records()
    coded, record = records[data.draw(st.integers(0, len(records) - 1))]
    raw = bytearray(record.to_bytes())
    if raw[1] & 1:                                      # mutate the body itself, not only its deflate
        raw = bytearray(raw[:1] + b"\x00" + zlib.decompress(bytes(raw[2:])))
    action = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if action == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif action == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += bytes(data.draw(st.binary(min_size=1, max_size=4)))
    try:
        parsed = T.TransformRecord.from_bytes(bytes(raw))
    except PixzipError:
        return
    try:
        back = parsed.inverse(coded)
    except PixzipError:
        return
    assert_codable(back)           # a record that parses and fits gives a well-formed image


def _lzma_raw(body: bytes) -> bytes:
    return lzma.compress(body, lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": T.MAX_BODY}])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_pixzip_error(raw):
    for data in (raw, bytes([T.RECORD_FORMAT, 0]) + raw, bytes([T.RECORD_FORMAT, 1]) + zlib.compress(raw),
                 bytes([T.RECORD_FORMAT, 2]) + _lzma_raw(raw)):
        try:
            record = T.TransformRecord.from_bytes(data)
        except PixzipError:
            continue
        assert T.TransformRecord.from_bytes(record.to_bytes()) == record


@pytest.mark.parametrize("flag, pack", [(1, lambda b: zlib.compress(b, 9)), (2, _lzma_raw)])
def test_bombs_and_framing_are_refused_in_both_packings(flag, pack):
    """A body packed by deflate (flag 1) or raw LZMA2 (flag 2): one that unpacks past MAX_BODY, or is cut short,
    extended, of another record format or with both flags, is refused."""
    bomb = bytes([T.RECORD_FORMAT, flag]) + pack(b"\x00" * (T.MAX_BODY + 1))
    with pytest.raises(PixzipError):
        T.TransformRecord.from_bytes(bomb)
    record = _all_records()[0][1]
    good = bytes([T.RECORD_FORMAT, flag]) + pack(_body(record))
    assert T.TransformRecord.from_bytes(good) == record
    for bad in (good[:-1], good + b"\x00", bytes([2]) + good[1:], good[:1] + b"\x03" + good[2:]):
        with pytest.raises(PixzipError):
            T.TransformRecord.from_bytes(bad)


def _body(record) -> bytes:
    """A record's bytes before packing (to_bytes' body)."""
    data = record.to_bytes()
    return zlib.decompress(data[2:]) if data[1] == 1 else lzma.decompress(
        data[2:], lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": T.MAX_BODY}]) if data[1] == 2 \
        else data[2:]


def test_a_record_takes_its_smallest_packing():
    """Stored as it is, deflated or LZMA2-packed, whichever is smallest: a chart's palette of many colours packs
    best by LZMA2, a single step stays unpacked."""
    rng = np.random.default_rng(4)
    base = rng.integers(0, 256, (4, 3))                  # four inks and the anti-aliased blends of each pair
    t = np.arange(1, 40)[:, None] / 40
    colours = np.unique(np.concatenate([np.round(base[a] * t + base[b] * (1 - t)) for a in range(4)
                                        for b in range(a)]).astype(np.uint8), axis=0)
    colours = colours[palette.luminance_order(colours)]
    record = T.TransformRecord((palette.Palette("RGB", colours.tobytes()),))
    data = record.to_bytes()
    body = _body(record)
    assert data[1] == 2 and len(data) - 2 < min(len(body), len(zlib.compress(body, 9)))
    assert T.TransformRecord.from_bytes(data) == record
    assert T.TransformRecord((steps.GreyFromRGB("RGB"),)).to_bytes()[1] == 0


def test_identity_record_is_three_bytes():
    assert T.IDENTITY.to_bytes() == bytes([T.RECORD_FORMAT, 0, 0])
    assert T.TransformRecord.from_bytes(T.IDENTITY.to_bytes()).is_identity


def test_steps_that_do_not_follow_on_are_refused():
    body = bytes([2]) + bytes([T.GreyFromRGB.KIND, T.MODE_CODES.index("RGB")]) \
        + bytes([T.GreyFromRGB.KIND, T.MODE_CODES.index("RGB")])
    with pytest.raises(PixzipError, match="follow on"):
        T.TransformRecord.from_bytes(bytes([T.RECORD_FORMAT, 0]) + body)


def test_palette_with_a_repeated_colour_is_refused():
    body = bytes([1, T.Palette.KIND, T.MODE_CODES.index("RGB"), 1]) + b"\x01\x02\x03" + b"\x00\x00\x00"
    with pytest.raises(PixzipError, match="repeated"):
        T.TransformRecord.from_bytes(bytes([T.RECORD_FORMAT, 0]) + body)


def test_inverse_refuses_a_decoded_image_that_does_not_fit():
    image = make_image("RGB", 8, 8, "colours", 4, 1)
    coded, record = next((c, r) for c, r in T.candidates(image) if T.Palette in _kinds(r))
    bad = steps.derived(coded, "L", [np.full_like(coded.planes[0], 4)])        # index 4 of 4 colours
    with pytest.raises(PixzipError, match="beyond"):
        record.inverse(bad)
    with pytest.raises(PixzipError, match="expected"):
        record.inverse(image)                                                  # wrong mode
    six = ImageData("L", 4, 4, [(np.arange(16, dtype=np.uint8) * 4).reshape(4, 4, 1)])
    coded, record = T.candidates(six)[1]
    with pytest.raises(PixzipError, match="beyond"):
        record.inverse(steps.derived(coded, "L", [np.full_like(coded.planes[0], 16)]))


def test_forward_refuses_an_image_the_record_does_not_fit():
    image = make_image("RGB", 8, 8, "colours", 4, 1)
    other = make_image("RGB", 8, 8, "colours", 4, 2)
    for _, record in T.candidates(image)[1:]:
        with pytest.raises(PixzipError):
            record.forward(other)


# -- the stored fallback ---------------------------------------------------------------------------------
@pytest.mark.parametrize("levels,bits", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (64, 6), (65, 7), (256, 8)])
def test_bits_for_levels(levels, bits):
    assert S.bits_for_levels(levels) == bits


def test_bits_for_levels_refuses_outside_1_to_256():
    for bad in (0, 257):
        with pytest.raises(ValueError):
            S.bits_for_levels(bad)


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(0, 8), shape=st.tuples(st.integers(1, 17), st.integers(1, 17), st.sampled_from([1, 3])),
       seed=st.integers(0, 2 ** 31))
def test_pack_unpack_is_exact_at_every_bit_width(bits, shape, seed):
    values = np.random.default_rng(seed).integers(0, 1 << bits, shape).astype(np.uint8)
    packed = S.pack_bits(values, bits)
    assert len(packed) == S.stored_size(values.size, bits)
    assert np.array_equal(S.unpack_bits(packed, shape, bits), values)


def test_pack_layout_is_msb_first():
    assert S.pack_bits(np.array([1, 2, 3], np.uint8), 2) == bytes([0b01101100])
    assert S.pack_bits(np.array([255, 0], np.uint8), 8) == b"\xff\x00"


def test_unpack_refuses_wrong_length_and_nonzero_padding():
    packed = S.pack_bits(np.array([1, 2, 3], np.uint8), 2)
    with pytest.raises(PixzipError, match="length"):
        S.unpack_bits(packed + b"\x00", (3,), 2)
    with pytest.raises(PixzipError, match="padding"):
        S.unpack_bits(bytes([packed[0] | 1]), (3,), 2)
    with pytest.raises(PixzipError):
        S.unpack_bits(packed, (3,), 9)


def test_pack_refuses_a_value_too_wide():
    with pytest.raises(ValueError):
        S.pack_bits(np.array([4], np.uint8), 2)


def test_stored_pays_only_when_strictly_smaller():
    count = 1000                                   # 6 bits each: 750 bytes
    assert S.stored_pays(751, count, 6)
    assert not S.stored_pays(750, count, 6)
    assert not S.stored_pays(751, count, 6, stored_overhead=1)
    assert S.stored_pays(1, count, 0)              # one level: nothing to store


def test_levels_needed_is_max_plus_one():
    assert S.levels_needed(np.array([[0, 5], [2, 1]], np.uint8)) == 6
    assert S.levels_needed(np.zeros((2, 2), np.uint8)) == 1


# -- the estimate ----------------------------------------------------------------------------------------
@SETTINGS
@given(h=st.integers(1, 12), w=st.integers(1, 12), signed=st.booleans(), seed=st.integers(0, 2 ** 31))
def testmed_residuals_are_the_median_edge_detector(h, w, signed, seed):
    """The clipped form equals LOCO-I's three cases, on planes and on channel differences."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-255 if signed else 0, 256, (h, w)).astype(np.int32 if signed else np.uint8)
    pad = np.pad(x.astype(np.int32), ((1, 0), (1, 1)), mode="edge")
    wv, n, nw, ne = pad[1:, :-2], pad[:-1, 1:-1], pad[:-1, :-2], pad[:-1, 2:]
    pred = np.where(nw >= np.maximum(wv, n), np.minimum(wv, n),
                    np.where(nw <= np.minimum(wv, n), np.maximum(wv, n), wv + n - nw))
    for small in (False, True):                      # int16 sums for samples within +-255: the same values
        residuals, activity = med_residuals(x, small)
        assert np.array_equal(residuals, x - pred)
        assert np.array_equal(activity, np.abs(wv - nw) + np.abs(n - nw) + np.abs(n - ne))
        wide = residuals.astype(np.int32), activity.astype(np.int32)
        assert _laplace_bits(residuals, activity) == _laplace_bits(*wide)


def test_estimate_of_a_large_image_samples_rows_and_scales_back():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2048, 1024, 1), dtype=np.uint8)
    whole = T.estimate_bits(ImageData("L", 1024, 2048, [noise])) / noise.size
    part = T.estimate_bits(ImageData("L", 1024, 512, [noise[:512]])) / (512 * 1024)
    assert abs(whole / part - 1) < 0.01 and 7.5 < part < 9.5


def test_estimate_prefers_ranks_of_spread_levels():
    ramp = (np.add.outer(np.arange(64), np.arange(64)) // 2 * 4).astype(np.uint8)[..., None]   # 6-bit, smooth
    image = ImageData("L", 64, 64, [ramp])
    coded, record = T.choose(image)
    assert _kinds(record) == [T.Levels]
