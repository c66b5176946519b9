"""Levels in value space (entropy stage 4, pixzip/entropy/value_map.py): the tables that carry the network's
prediction from values into ranks are integers with the properties the stage relies on, and the compiled
stage writes the reference's bytes with them and refuses a rank a channel does not use."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import to_rgb565
from pixzip.backends import native
from pixzip.entropy import adaptive as A
from pixzip.entropy.value_map import MU_VALUES, SHIFT_OF_GAP, ValueMap, channel_tables
from pixzip.formats.tiles import coding_order
from pixzip.spec.fixed_point import LS_FRAC


def test_the_scale_shift_is_the_rounded_log_far_from_any_rounding_boundary():
    """Computed with math.log, but every LS_FRAC ln d is so far from a half that any libm rounds alike."""
    for d in range(2, 256):
        x = LS_FRAC * math.log(d)
        assert abs(x - math.floor(x) - 0.5) > 5e-4
        assert SHIFT_OF_GAP[d] == round(x)
    assert SHIFT_OF_GAP[1] == 0


@pytest.mark.parametrize("values", [[0, 8, 16, 24, 33, 41, 49, 57, 66, 255], list(range(0, 256, 4)), [7], [3, 200],
                                    list(range(256))])
def test_the_mean_map_is_monotone_exact_at_the_used_values_and_in_range(values):
    t = np.array(values)
    mu, shift = channel_tables(t)
    assert mu.dtype == np.int32 and mu.shape == (MU_VALUES,) and shift.shape == (MU_VALUES,)
    assert (np.diff(mu) >= 0).all() and mu.min() == 0 and mu.max() == 16 * (len(t) - 1)
    assert (mu[16 * t[t < 256]] == 16 * np.arange(len(t))).all()
    assert (shift >= 0).all()
    if len(t) > 1:
        gap = t[1] - t[0]
        assert shift[0] == SHIFT_OF_GAP[gap]             # below the first value: the first gap's
    if values == list(range(256)):                       # all 256 values: ranks are values, nothing moves
        assert (mu[:4081] == np.arange(4081)).all() and not shift.any()


def test_ranks_and_values_convert_both_ways():
    rng = np.random.default_rng(0)
    tables = [np.unique(rng.integers(0, 256, 40)) for _ in range(3)]
    vm = ValueMap.of(tables)
    ranks = np.stack([rng.integers(0, len(t), (5, 6)) for t in tables], -1).astype(np.uint8)
    values = vm.to_values(ranks)
    assert all(np.isin(values[..., c], t).all() for c, t in enumerate(tables))
    assert np.array_equal(vm.to_ranks(values), ranks)
    mapped = vm.all_outputs(np.array([[0, 5], [4080, 70], [16 * int(tables[1][3]), 9]]), np.array([0, 2, 1]))
    assert mapped.tolist()[2] == [48, max(0, 9 - int(vm.shift[1, 16 * int(tables[1][3])]))]
    assert [vm.outputs(4080, 70, 2)] == [tuple(mapped[1])]


def _rgb565(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 110 + 70 * np.sin(x / 4.0 + seed)[..., None] * np.array([1.0, 0.7, 0.5]) + (2 * y)[..., None]
    return to_rgb565(np.clip(base + rng.normal(0, 5, (h, w, 3)), 0, 255))


def _shipped():
    from pixzip import zoo
    model = zoo.load_model("pcnn-rgb-v7").record
    if not (native.adaptive_available() and native.supports(model)):
        pytest.skip("needs the compiled adaptive coder")
    return model


@pytest.mark.parametrize("h, w, level", [(1, 9, 9), (7, 5, 7), (23, 18, 9), (16, 31, 10), (9, 11, 17), (16, 31, 18)])
def test_c_codes_value_space_as_the_reference_does(h, w, level):
    """The compiled tile coder with a value map: the network's dense pass on the values, mapped, then the
    stage on the ranks: the reference's bytes, decoded back to the ranks by the wavefront walk."""
    model = _shipped()
    image = _rgb565(h, w, seed=h + w)
    vm = ValueMap.of([np.unique(image[..., c]) for c in range(3)])
    ranks = vm.to_ranks(image)
    params = vm.all_outputs(native.dense_params(model, image), coding_order(h, w, model.slope, 3)[2])
    lv = A.level_for(level, model)
    reference = A.encode_tile(ranks, params, model.laplace_prefix(), model.slope, lv, top=vm.tops)
    data = native.encode_tile_adaptive(model, ranks, level, vmap=vm)
    assert data == reference
    assert np.array_equal(native.decode_tile_adaptive(model, data, h, w, level, vmap=vm), ranks)
    decoder = A.TileDecoder(data, h, w, 3, model.laplace_prefix(), model.slope, lv, top=vm.tops)
    for n in range(len(params)):
        decoder.step(*params[n])
    assert np.array_equal(decoder.finish(), ranks)
    # the range 0..255 (stage 1's) codes the same ranks in more bytes: probability on ranks that cannot occur
    assert len(A.encode_tile(ranks, params, model.laplace_prefix(), model.slope, lv)) > len(data) or h * w < 40


def test_a_rank_the_channel_does_not_use_is_refused_both_ways():
    model = _shipped()
    image = _rgb565(12, 12, seed=3)
    vm = ValueMap.of([np.unique(image[..., c]) for c in range(3)])
    ranks = vm.to_ranks(image)
    data = native.encode_tile_adaptive(model, ranks, 9, vmap=vm)
    fewer = ValueMap.of([v[:max(1, len(v) // 3)] for v in vm.values])   # most decoded ranks have no value now
    with pytest.raises(ValueError):
        native.decode_tile_adaptive(model, data, 12, 12, 9, vmap=fewer)
    with pytest.raises(ValueError):
        native.encode_tile_adaptive(model, ranks, 9, vmap=fewer)


def test_a_channel_of_one_value_costs_nothing_and_the_mean_stays_in_range():
    """With top 0 no decision is coded; a mean past 16 * top is held there on both sides."""
    model = _shipped()
    image = _rgb565(9, 11, seed=4)
    image[..., 1] = 77                                   # G takes one value
    vm = ValueMap.of([np.unique(image[..., c]) for c in range(3)])
    assert vm.tops[1] == 0
    ranks = vm.to_ranks(image)
    data = native.encode_tile_adaptive(model, ranks, 9, vmap=vm)
    assert np.array_equal(native.decode_tile_adaptive(model, data, 9, 11, 9, vmap=vm), ranks)
    params = vm.all_outputs(native.dense_params(model, image), coding_order(9, 11, model.slope, 3)[2])
    params[:, 0] = 4080                                  # every mean at the top of 0..255: beyond every channel's range
    lv = A.level_for(9, model)
    held = A.encode_tile(ranks, params, model.laplace_prefix(), model.slope, lv, top=vm.tops)
    params[:, 0] = np.array([16 * t for t in vm.tops])[coding_order(9, 11, model.slope, 3)[2]]
    assert held == A.encode_tile(ranks, params, model.laplace_prefix(), model.slope, lv, top=vm.tops)
