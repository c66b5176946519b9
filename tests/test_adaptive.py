"""The adaptive entropy stage (issue 20): the Python reference (pixzip/entropy/adaptive.py, the
specification) round-trips, the C stage (pixzip/csrc/adaptive.c) writes the same bytes and reads them
back, adaptive state carried along a chain behaves the same on both sides, and corrupt streams neither
crash nor pass silently where the coder can tell."""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from pixzip.backends import native
from pixzip.nets import modelfile
from pixzip.entropy import adaptive as A
from pixzip.entropy import adaptive_priors
from pixzip.entropy import adaptive_features as F

REPO_MODELS = Path(__file__).resolve().parents[1] / "pixzip" / "models"
needs_c = pytest.mark.skipif(not native.adaptive_available(), reason="compiled coder with the adaptive stage not built")


@lru_cache(maxsize=1)
def _v7():
    return modelfile.load(REPO_MODELS / "pcnn-rgb-v7.pxm").net


def _cdf() -> np.ndarray:
    return _v7()._laplace_prefix().numpy()


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with texture and noise (structured, like a photograph's crop)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(x / 5.0 + seed)[..., None] * np.array([1.0, 0.8, 0.6]) + (y * 2)[..., None]
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _network_params(pixels: np.ndarray) -> np.ndarray:
    """pcnn-rgb-v7's head outputs for the tile, in the decoding order (what the coder gives the stage)."""
    if native.available():
        return native.tile_params(_v7(), pixels)
    rng = np.random.default_rng(1)            # no compiled coder: any outputs exercise the stage
    n = pixels.size
    return np.stack([rng.integers(0, 4081, n), rng.integers(0, 73, n)], axis=1)


def _random_params(n: int, seed: int) -> np.ndarray:
    """Outputs at and beside the extremes too: mu at 0 and 255 (forced signs and exponent bits)."""
    rng = np.random.default_rng(seed)
    mu = rng.choice([0, 3, 8, 2040, 4072, 4080, *rng.integers(0, 4081, 10)], n)
    return np.stack([mu, rng.integers(0, 73, n)], axis=1).astype(np.int64)


# ---- tables and the binary coder --------------------------------------------------------------------

def test_squash_points_are_the_logistic_function_rounded():
    assert A.SQUASH_POINTS == tuple(round(4096 / (1 + math.exp(-(k - 16) / 2))) for k in range(33))


def test_stretch_inverts_squash():
    assert all(A.STRETCH[p] <= A.STRETCH[p + 1] for p in range(4095))
    for p in range(1, 4095):
        d = A.STRETCH[p]
        assert A.squash(d) >= p and (d == -A.ST_MAX or A.squash(d - 1) < p)


def test_binary_coder_round_trips_and_ends_exactly():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 2000):
        probs = rng.integers(1, 4096, n)
        bits = (rng.random(n) < probs / 4096).astype(int)
        enc = A.BinaryEncoder()
        for p, y in zip(probs, bits):
            enc.code(int(p), int(y))
        data = enc.finish()
        dec = A.BinaryDecoder(data)
        assert [dec.code(int(p)) for p in probs] == list(bits)
        assert dec.exact()
        longer = A.BinaryDecoder(data + bytes(5))       # bytes the decoder never reads: caught
        for p in probs:
            longer.code(int(p))
        assert not longer.exact()


def test_binary_coder_costs_about_the_ideal_bits():
    rng = np.random.default_rng(1)
    probs = rng.integers(50, 4050, 20000)
    bits = (rng.random(len(probs)) < probs / 4096).astype(int)
    enc = A.BinaryEncoder()
    for p, y in zip(probs, bits):
        enc.code(int(p), int(y))
    ideal = sum(-math.log2(p / 4096 if y else 1 - p / 4096) for p, y in zip(probs, bits))
    assert 8 * len(enc.finish()) <= ideal * 1.001 + 32


def test_decoding_order_is_the_native_walks():
    h, w, slope = 5, 7, 2
    order = list(A.decoding_order(h, w, 3, slope))
    assert sorted(order) == sorted((i, j, c) for i in range(h) for j in range(w) for c in range(3))
    t = [j + slope * i for i, j, _ in order]
    assert t == sorted(t)


def test_laplace_start_is_the_engines():
    from pixzip.spec.tables import laplace_start
    mu, idx = np.array([0, 7, 8, 1234, 4080]), np.array([0, 72, 5, 40, 13])
    assert list(laplace_start(mu, idx)) == [A.laplace_start(int(m), int(i)) for m, i in zip(mu, idx)]


# ---- the reference ------------------------------------------------------------------------------------------

def test_reference_round_trips_with_the_step_interface():
    px = _photo(9, 11)
    params = _network_params(px)
    data = A.encode_tile(px, params, _cdf(), 2)
    dec = A.TileDecoder(data, 9, 11, 3, _cdf(), 2)
    order = list(A.decoding_order(9, 11, 3, 2))
    for n, where in enumerate(order):
        assert dec.position == where
        dec.step(*params[n])
    assert dec.position is None
    assert np.array_equal(dec.finish(), px)


def test_reference_learns_a_flat_image_far_below_the_network():
    """A constant image: the stage learns that every residual is the same, the network alone cannot."""
    px = np.full((16, 16, 3), 77, dtype=np.uint8)
    params = np.tile(np.array([[16 * 80, 30]]), (px.size, 1))
    data = A.encode_tile(px, params, _cdf(), 2)
    start = A.laplace_start(16 * 80, 30)
    cdf = _cdf()
    network_bits = px.size * math.log2((cdf[start + 256] - cdf[start]) / (cdf[start + 78] - cdf[start + 77]))
    assert 8 * len(data) < network_bits / 10


def test_reference_decoder_refuses_a_truncated_stream():
    px = _photo(8, 8, seed=3)
    params = _network_params(px)
    data = A.encode_tile(px, params, _cdf(), 2)
    with pytest.raises(ValueError):
        A.decode_tile(data[: len(data) // 2], 8, 8, 3, _cdf(), 2, _known(params))


def _known(params):
    it = iter(params)
    return lambda i, j, c, pixels: next(it)


def test_slope_one_is_refused():
    with pytest.raises(ValueError):
        A.encode_tile(_photo(2, 2), _random_params(12, 0), _cdf(), 1)


# ---- C against the reference ---------------------------------------------------------------------------------

CASES = [(1, 1, 3, 2, 1), (1, 9, 3, 2, 1), (9, 1, 3, 2, 2), (7, 13, 3, 2, 1), (13, 7, 3, 4, 2), (12, 12, 1, 2, 1),
         (24, 20, 3, 2, 1), (1, 1, 3, 2, 3), (9, 11, 3, 2, 3), (12, 12, 1, 2, 3), (10, 9, 4, 2, 3), (24, 20, 3, 2, 3),
         (11, 8, 3, 3, 4), (1, 1, 3, 2, 5), (9, 11, 3, 2, 5), (12, 12, 1, 2, 5), (10, 9, 4, 2, 5), (24, 20, 3, 2, 5),
         (13, 7, 3, 3, 6), (16, 17, 3, 2, 6), (1, 1, 3, 2, 7), (9, 11, 3, 2, 7), (12, 12, 1, 2, 7), (10, 9, 4, 2, 7),
         (24, 20, 3, 2, 7), (40, 33, 3, 2, 7), (13, 7, 3, 3, 8), (16, 17, 3, 2, 8), (1, 1, 3, 2, 9), (9, 11, 3, 2, 9),
         (12, 12, 1, 2, 9), (10, 9, 4, 2, 9), (40, 33, 3, 2, 9), (13, 7, 3, 3, 10), (24, 20, 3, 2, 10), (1, 1, 3, 2, 11),
         (12, 12, 1, 2, 11), (24, 20, 3, 2, 11), (30, 26, 1, 2, 11), (13, 7, 3, 3, 12), (16, 17, 1, 2, 12),
         (1, 1, 3, 2, 13), (1, 9, 1, 2, 13), (9, 1, 3, 2, 13), (24, 20, 3, 2, 13), (30, 26, 1, 2, 13), (13, 7, 3, 3, 13),
         (1, 1, 1, 2, 14), (9, 11, 3, 2, 14), (24, 20, 1, 2, 14), (13, 7, 3, 3, 14), (1, 1, 1, 2, 15), (9, 11, 3, 2, 15),
         (24, 20, 1, 2, 15), (13, 7, 3, 3, 15), (1, 1, 1, 2, 16), (9, 11, 3, 2, 16), (24, 20, 1, 2, 16), (13, 7, 3, 3, 16),
         (1, 1, 1, 2, 17), (12, 12, 1, 2, 17), (30, 26, 1, 2, 17), (9, 11, 3, 2, 17), (13, 7, 3, 3, 18),
         (24, 20, 1, 2, 18)]


def _exact_structure(h: int, w: int, C: int, seed: int) -> np.ndarray:
    """Flat patches, a gradient along a diagonal, a channel equal to another and noise: where the exact-
    predictor vote (levels 5 and 6) fires, with every candidate exact somewhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    px = np.stack([(x + y) * 3 % 256, np.where(x < w // 2, 40, 200), (x * 7) % 256, y * 5 % 256][:C], axis=2)
    if C > 1:
        px[h // 2:, :, 1] = px[h // 2:, :, 0]
    noisy = rng.random((h, w)) < 0.15
    px[noisy] = rng.integers(0, 256, (int(noisy.sum()), C))
    return px.astype(np.uint8)


@needs_c
@pytest.mark.parametrize("h, w, C, slope, level", CASES)
def test_c_writes_the_references_bytes_and_reads_them_back(h, w, C, slope, level):
    for kind in ("photo", "random", "exact"):
        if kind == "photo" and C == 3:
            px = _photo(h, w, seed=h + w)
            params = _network_params(px)
        elif kind == "exact":
            px = _exact_structure(h, w, C, h + w)
            params = _network_params(px) if C == 3 else _random_params(px.size, h * w)
        else:
            rng = np.random.default_rng(h * w)
            px = rng.integers(0, 256, (h, w, C), dtype=np.uint8)
            params = _random_params(px.size, h + w)
        ref = A.encode_tile(px, params, _cdf(), slope, level)
        got = native.adaptive_encode_known(px, params, _cdf(), slope, level)
        assert got == ref, (kind, len(got), len(ref))
        assert np.array_equal(native.adaptive_decode_known(got, h, w, C, _cdf(), slope, params, level), px)


@needs_c
@pytest.mark.parametrize("level", [1, 3, 7, 9, 11, 13, 17])
def test_a_chain_of_tiles_carries_the_state_alike_in_c_and_python(level):
    tiles = [_photo(10, 12, seed=s) for s in range(3)]
    params = [_network_params(t) for t in tiles]
    n = sum(t.size for t in tiles)
    ref_state, c_state = A.State(level, n), native.AdaptiveState(level, n)
    streams = []
    for t, p in zip(tiles, params):
        ref = A.encode_tile(t, p, _cdf(), 2, state=ref_state)
        assert native.adaptive_encode_known(t, p, _cdf(), 2, state=c_state) == ref
        streams.append(ref)
    assert streams[1] != A.encode_tile(tiles[1], params[1], _cdf(), 2, level)       # the carried state is used
    c_state, ref_state = native.AdaptiveState(level, n), A.State(level, n)
    for t, p, s in zip(tiles, params, streams):
        assert np.array_equal(native.adaptive_decode_known(s, *t.shape, _cdf(), 2, p, state=c_state), t)
        assert np.array_equal(A.decode_tile(s, *t.shape, _cdf(), 2, _known(p), state=ref_state), t)


@needs_c
def test_the_reference_decodes_what_c_encoded():
    px = _photo(11, 10, seed=5)
    params = _network_params(px)
    data = native.adaptive_encode_known(px, params, _cdf(), 2)
    assert np.array_equal(A.decode_tile(data, 11, 10, 3, _cdf(), 2, _known(params)), px)


@needs_c
def test_corrupt_streams_do_not_crash_and_truncation_is_detected():
    px = _photo(16, 16, seed=9)
    params = _network_params(px)
    data = native.adaptive_encode_known(px, params, _cdf(), 2)
    for cut in (0, 1, len(data) // 3, len(data) - 8):
        with pytest.raises(ValueError):
            native.adaptive_decode_known(data[:cut], 16, 16, 3, _cdf(), 2, params)
    rng = np.random.default_rng(0)
    caught = 0
    for trial in range(20):
        bad = bytearray(data)
        bad[rng.integers(0, len(bad))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = native.adaptive_decode_known(bytes(bad), 16, 16, 3, _cdf(), 2, params)
        except ValueError:
            caught += 1
            continue
        caught += not np.array_equal(out, px)           # decoded, but not to the pixels (the CRC's job)
    assert caught == 20
    garbage = rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
    with pytest.raises(ValueError):
        native.adaptive_decode_known(garbage, 16, 16, 3, _cdf(), 2, params)


@needs_c
def test_state_memory_follows_the_size_rule():
    lv = A.LEVELS[1]
    for n, bits in ((3072, 10), (196608, lv.max_table_bits)):
        assert A.table_bits(lv, n) == bits
        tables = len(lv.contexts) * (1 << bits) * A.NODES * 4
        assert tables < native.AdaptiveState(1, n).memory < tables + (1 << 20)


@needs_c
def test_an_invalid_level_is_refused_by_c():
    for bad in (dataclasses.replace(A.LEVELS[1], max_table_bits=40), dataclasses.replace(A.LEVELS[7], ols=False, shifted=True)):
        with pytest.raises(MemoryError):
            native.AdaptiveState(bad, 100)


@needs_c
def test_the_shifted_table_follows_the_images_own_fit():
    """Levels 9 and 10's second network table sits at p + the least-squares prediction: where the image's
    linear structure beats the network (here one that predicts mid-grey everywhere), it codes far fewer bytes
    than the same level without it."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:48, 0:40]
    base = (2 * x + 3 * y + 20 * np.sin(x / 4.0))[..., None] + np.array([0, 10, 20])
    px = np.clip(base + rng.integers(-2, 3, (48, 40, 3)), 0, 255).astype(np.uint8)
    params = np.tile(np.array([[128 * 16, 40]], dtype=np.int64), (px.size, 1))
    with_it = native.adaptive_encode_known(px, params, _cdf(), 2, A.LEVELS[9])
    without = native.adaptive_encode_known(px, params, _cdf(), 2, dataclasses.replace(A.LEVELS[9], shifted=False))
    assert len(with_it) < 0.9 * len(without)


# ---- inside the native tile coder ---------------------------------------------------------------------------------

def _shipped_or_skip():
    if not native.adaptive_available() or not native.supports(_v7()):
        pytest.skip("the native coder with the adaptive stage is not built")
    return _v7()


@pytest.mark.parametrize("h, w", [(1, 1), (1, 17), (13, 1), (5, 7), (31, 20)])
def test_native_tile_coder_round_trips_and_its_bytes_are_the_stages(h, w):
    """Encode: the dense pass, then the stage (the same bytes as the stage over the walk's outputs);
    decode: the wavefront walk calling the stage per sub-pixel."""
    model = _shipped_or_skip()
    px = _photo(h, w, seed=h * w)
    data = native.encode_tile_adaptive(model, px)
    assert data == native.adaptive_encode_known(px, native.tile_params(model, px), _cdf(), model.slope)
    assert np.array_equal(native.decode_tile_adaptive(model, data, h, w), px)


def test_native_tile_coder_in_two_threads_and_chains_gives_the_same_pixels():
    from concurrent.futures import ThreadPoolExecutor
    model = _shipped_or_skip()
    tiles = [_photo(12 + k, 9 + 2 * k, seed=k) for k in range(4)]
    alone = [native.encode_tile_adaptive(model, t) for t in tiles]
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda t: native.encode_tile_adaptive(model, t), tiles)) == alone
        decoded = list(pool.map(lambda k: native.decode_tile_adaptive(model, alone[k], *tiles[k].shape[:2]), range(4)))
    assert all(np.array_equal(d, t) for d, t in zip(decoded, tiles))
    n = sum(t.size for t in tiles)                  # a chain: one state through the tiles in a fixed order
    state = native.AdaptiveState(1, n)
    chain = [native.encode_tile_adaptive(model, t, state=state) for t in tiles]
    assert chain[0] == alone[0] and chain[1:] != alone[1:]
    state = native.AdaptiveState(1, n)
    assert all(np.array_equal(native.decode_tile_adaptive(model, s, *t.shape[:2], state=state), t)
               for s, t in zip(chain, tiles))


def test_the_reference_decodes_a_native_tile_with_only_the_networks_causal_outputs():
    """The slow path where no compiled coder is installed: the reference stage decodes, asking the
    network for each next sub-pixel's outputs given the pixels decoded so far (here the dense pass over
    the partial image, whose not-yet-decoded pixels are zero: outputs depend on the past only)."""
    model = _shipped_or_skip()
    px = _photo(4, 5, seed=2)
    data = native.encode_tile_adaptive(model, px)
    order = {where: n for n, where in enumerate(A.decoding_order(4, 5, 3, model.slope))}

    def params_of(i, j, c, pixels):
        return native.dense_params(model, pixels)[order[(i, j, c)]]

    assert np.array_equal(A.decode_tile(data, 4, 5, 3, _cdf(), model.slope, params_of), px)


def test_native_tile_decoder_refuses_a_damaged_stream():
    model = _shipped_or_skip()
    px = _photo(16, 16, seed=4)
    data = native.encode_tile_adaptive(model, px)
    with pytest.raises(ValueError):
        native.decode_tile_adaptive(model, data[:-6], 16, 16)
    with pytest.raises(ValueError):
        native.decode_tile_adaptive(model, data + bytes(8), 16, 16)


# ---- the exact-predictor vote (levels 5 and 6) -------------------------------------------------------------------

def _tile_with(values: np.ndarray) -> F.TileData:
    """A tile whose sub-pixels so far are `values` (h, w, C; -1: not coded yet), with their exact-masks
    recorded as the stage records them (candidates taken in raster order, as far as they are coded)."""
    h, w, C = values.shape
    tile = F.TileData(h, w, C)
    for i in range(h):
        for j in range(w):
            for c in range(C):
                if values[i, j, c] >= 0:
                    cand = F.exact_candidates(tile, i, j, c)
                    k = (i * w + j) * C + c
                    tile.value[k], tile.exact[k] = int(values[i, j, c]), F.exact_mask(cand, int(values[i, j, c]))
    return tile


def test_the_vote_names_the_predictor_exact_around_the_pixel():
    """A diagonal gradient (x = NE everywhere) votes NE (candidate 2), and the feature gives NE - p; a
    column gradient votes N (1); below the threshold, or with a level without a vote, nothing."""
    diag = np.array([[10 * (i + j) for j in range(5)] for i in range(4)])[..., None]
    known = diag.copy()
    known[3, 2:] = -1                                   # coding (3, 2): W, N, NW, NE known
    tile = _tile_with(known)
    cand = F.exact_candidates(tile, 3, 2, 0)
    assert cand[:5] == [40, 40, 50, 30, 50] and cand[5:] == [-1, -1, -1]
    vote, vx = F.exact_vote(tile, 3, 2, 0, 57, cand, 2)
    # NE was exact at W, N, NW, NE, NN and WW (6 hits; W + N - NW at 5: WW has no NW): NE is the vote
    assert vote == 1 + 4 * 2 + min(6 - 2, 3) and vx == 50 - 57
    column = np.array([[7 * j for j in range(5)] for i in range(4)])[..., None]     # constant down each column
    column[3, 2:] = -1
    tile = _tile_with(column)
    vote, vx = F.exact_vote(tile, 3, 2, 0, 20, F.exact_candidates(tile, 3, 2, 0), 2)
    assert (vote - 1) // 4 == 1 and vx == 14 - 20
    assert F.exact_vote(tile, 3, 2, 0, 20, F.exact_candidates(tile, 3, 2, 0), 7) == (0, 16)   # 6 hits
    assert F.features(tile, 3, 2, 0, 320, 10)[F.F_VOTE] == 0      # features alone take no vote (the coder does)


@needs_c
def test_the_vote_codes_a_diagonal_gradient_in_far_fewer_bytes():
    """What the vote is for: a tile where one predictor is always exact (here NE, in every channel: x + y
    ramps) costs level 5 a fraction of level 3's bytes, with the same head outputs."""
    y, x = np.mgrid[0:48, 0:48]
    px = np.repeat(((x + y) * 5 // 2 % 256)[..., None], 3, axis=2).astype(np.uint8)
    px[..., 1] = (px[..., 1].astype(int) + 40) % 256
    rng = np.random.default_rng(5)                # a network's outputs: within a few levels of the truth
    params = np.array([(16 * int(np.clip(int(px[i, j, c]) + rng.integers(-6, 7), 0, 255)), 20)
                       for i, j, c in A.decoding_order(48, 48, 3, 2)], dtype=np.int64)
    level3 = native.adaptive_encode_known(px, params, _cdf(), 2, 3)
    level5 = native.adaptive_encode_known(px, params, _cdf(), 2, 5)
    assert len(level5) < 0.8 * len(level3), (len(level5), len(level3))
    assert np.array_equal(native.adaptive_decode_known(level5, 48, 48, 3, _cdf(), 2, params, 5), px)


# ---- priors: the learned state a level's fresh state starts from, per network ------------------------------------

def _v7_level(level: int) -> A.Level:
    return A.level_for(level, _v7())


def test_levels_take_their_networks_prior_and_no_other():
    lv = _v7_level(3)
    assert lv.prior and A.prior_of(lv) is not None
    assert A.level_for(1, _v7()).prior == ""                    # levels 1 and 2 have none
    other = type("Net", (), {"cfg": type("Cfg", (), {"channels": 3, "hidden": 7, "blocks": 1})()})()
    assert A.level_for(3, other).prior == ""                     # a network without one starts untrained
    for level in A.LEVELS.values():                              # every named prior is shipped, and intact
        for _, name in level.priors:
            assert adaptive_priors.load_prior(name).size == A.State(dataclasses.replace(level, prior=name), 1).learned().size


@needs_c
@pytest.mark.parametrize("level", [3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
def test_c_and_the_reference_start_from_the_prior_alike(level):
    lv = _v7_level(level)
    px = _photo(9, 10, seed=level)
    params = _network_params(px)
    ref_state, c_state = A.State(lv, px.size), native.AdaptiveState(lv, px.size)
    assert np.array_equal(ref_state.learned(), c_state.learned())
    assert np.array_equal(ref_state.learned(), A.prior_of(lv))
    ref = A.encode_tile(px, params, _cdf(), 2, state=ref_state)
    assert native.adaptive_encode_known(px, params, _cdf(), 2, state=c_state) == ref
    assert np.array_equal(ref_state.learned(), c_state.learned())          # the learned state after it too
    assert ref != A.encode_tile(px, params, _cdf(), 2, level)               # the prior is used
    assert np.array_equal(A.decode_tile(ref, 9, 10, 3, _cdf(), 2, _known(params), lv), px)


def test_a_damaged_prior_is_refused(tmp_path, monkeypatch):
    name = _v7_level(3).prior
    data = bytearray((adaptive_priors.PRIORS / name).read_bytes())
    data[-1] ^= 1
    (tmp_path / name).write_bytes(bytes(data))
    monkeypatch.setattr(adaptive_priors, "PRIORS", tmp_path)
    adaptive_priors.load_prior.cache_clear()
    try:
        with pytest.raises(ValueError, match="damaged"):
            A.State(_v7_level(3), 100)
    finally:
        adaptive_priors.load_prior.cache_clear()


def test_the_least_squares_predictor_finds_an_exact_linear_relation():
    """Levels 7 and 8's predictor (adaptive_features.LeastSquares): where the residual is an exact
    combination of its inputs, its solved weights predict it (to rounding) after a few solves, per channel,
    and a channel that has not been solved yet predicts 0."""
    from pixzip.entropy.adaptive_features import LeastSquares
    rng = np.random.default_rng(5)
    ls = LeastSquares()
    n = ls.INPUTS
    coef = np.zeros(n, dtype=np.int64)
    coef[[0, 1, 2, 11]] = [1, 1, -1, 2]                  # r = W + N - NW + 2 rN, in differences to p
    errors = []
    for step in range(8 * ls.SOLVE_EVERY):
        u = [int(v) for v in rng.integers(-20, 21, n)]
        u[26] = 16
        r = int(coef @ np.array(u))
        pred = ls.predict(1, u)
        errors.append(abs(pred - 16 * r))
        ls.update(1, r)
    assert max(errors[:ls.SOLVE_EVERY]) > 16 * 10          # before the first solve: nothing known
    assert max(errors[-ls.SOLVE_EVERY:]) <= 16            # after: within a grey level
    assert ls.predict(0, u) == 0                           # channel 0 learned nothing


def test_the_least_squares_solve_is_exact_integer_arithmetic():
    from pixzip.entropy.adaptive_features import LeastSquares
    n = LeastSquares.INPUTS
    A = np.diag(np.arange(1, n + 1, dtype=np.int64) * 1000)
    b = np.arange(n, dtype=np.int64) * 777 - 5000
    w = LeastSquares._solve(A, b, [7] * n)
    assert w == [min(max((int(b[i]) << 16) // (int(A[i, i]) + 1), -(1 << 20)), 1 << 20) for i in range(n)]


# ---- the classical level (13): a median predictor in the network's place ------------------------------

def test_the_classical_outputs_follow_the_median_predictor_and_the_activity():
    from pixzip.entropy.adaptive_features import TileData, classical_outputs
    t = TileData(3, 4, 1)
    t.value = [10, 12, 14, 16, 11, 13, 15, 17, 12, 14, 16, 18]
    assert classical_outputs(t, 0, 0, 0) == (0, 14)                 # nothing known: 0, the smallest scale
    assert classical_outputs(t, 0, 2, 0) == (16 * 12, 14)           # first row: W (12), N = NW = NE = W
    assert classical_outputs(t, 1, 0, 0) == (16 * 10, 16 + 6 * 2)  # first column: N (10), W = NW = N; |N - NE| = 2
    assert classical_outputs(t, 1, 1, 0) == (16 * 12, 16 + 6 * 3)  # the median of W 11, N 12, W + N - NW 13; a = 6
    assert classical_outputs(t, 1, 3, 0) == (16 * 16, 16 + 6 * 2)  # last column: NE = N (16); a = 1 + 2 + 0


@needs_c
def test_the_classical_levels_ignore_the_networks_outputs():
    """Level 13 codes with the median predictor's outputs whatever the network said: any two sets of head outputs
    give the same bytes, in C and in the reference, and decode with a third."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:20, 0:24]
    px = np.stack([x * 5 + y * 3, 200 - x * 4, (x * y) % 256], -1).astype(np.uint8)
    a, b = (np.stack([rng.integers(0, 4096, px.size), rng.integers(0, 73, px.size)], 1) for _ in range(2))
    got = native.adaptive_encode_known(px, a, _cdf(), 2, 13)
    assert got == native.adaptive_encode_known(px, b, _cdf(), 2, 13) == A.encode_tile(px, b, _cdf(), 2, 13)
    assert np.array_equal(native.adaptive_decode_known(got, 20, 24, 3, _cdf(), 2, np.zeros_like(a), 13), px)
    assert len(got) < len(native.adaptive_encode_known(px, a, _cdf(), 2, 12))       # level 12 on the noise given


# ---- planes of two values (14): a bilevel coder's templates ---------------------------------------------------
@needs_c
@pytest.mark.parametrize("level", [14, 15, 16])
@pytest.mark.parametrize("h, w, slope", [(1, 1, 2), (2, 9, 2), (17, 40, 2), (30, 21, 4), (8, 3, 3)])
def test_the_template_levels_are_the_reference_on_two_valued_planes(h, w, slope, level):
    """Level 14's template bits (every neighbour of TEMPLATES the decoder has at slope 2, 0 outside the tile),
    level 15's match model (its table carried along a chain) and level 16's (its value the centre; on grey glyphs)
    in C and in the reference: the same bytes, and the tiles decode."""
    px = _glyph_page(h, w, h * 100 + w) if level < 16 else _word_page(h, w, h * 100 + w, greys=5)
    params = np.zeros((h * w, 2), np.int64)
    state, ref, back = (s(level, 2 * px.size) for s in (native.AdaptiveState, A.State, native.AdaptiveState))
    for _ in range(2):                                   # the second tile continues the first one's state
        got = native.adaptive_encode_known(px, params, _cdf(), slope, level, state)
        assert got == A.encode_tile(px, params, _cdf(), slope, level, ref)
        assert np.array_equal(native.adaptive_decode_known(got, h, w, 1, _cdf(), slope, params, level, back), px)


def test_the_templates_read_only_what_the_decoder_has():
    """Every template neighbour precedes the sub-pixel in the decoding order at the smallest slope the stage takes."""
    from pixzip.entropy.adaptive_features import TEMPLATES
    for di, dj in (n for t in TEMPLATES for n in t):
        assert (di, dj) != (0, 0) and (di < 0 or dj < 0)
        assert dj + 2 * di < 0 or (dj + 2 * di == 0 and di < 0)      # an earlier wavefront, or an earlier row in it
    assert [len(t) for t in TEMPLATES] == [10, 6, 12] and len({n for t in TEMPLATES for n in t}) == 28


def test_the_match_model_reads_only_what_the_decoder_has():
    """Every neighbour of the match model's hash and of its record of hits precedes the sub-pixel in the decoding
    order at slope 2."""
    from pixzip.entropy.adaptive_features import _HITS_AT, MATCH_NEIGHBOURS
    for di, dj in MATCH_NEIGHBOURS + _HITS_AT:
        assert dj + 2 * di < 0 or (dj + 2 * di == 0 and di < 0)
    assert len(set(MATCH_NEIGHBOURS)) == len(MATCH_NEIGHBOURS) == 81


def _word_page(h: int, w: int, seed: int, greys: int = 2) -> np.ndarray:
    """Six seeded words of three to five of ten 7x5 glyphs, set in lines on 0: a made page of text, (h, w, 1); the
    glyphs' samples 0 and 255, or with `greys` > 2 that many levels from 0 to 255 (anti-aliased)."""
    rng = np.random.default_rng(seed)
    if greys == 2:
        glyphs = (rng.random((10, 7, 5)) < 0.5).astype(np.uint8) * 255
    else:
        glyphs = (rng.integers(0, greys, (10, 7, 5)) * 255 // (greys - 1)).astype(np.uint8)
    words = [rng.integers(0, 10, rng.integers(3, 6)) for _ in range(6)]
    page = np.zeros((h + 7, w + 40), np.uint8)
    for top in range(0, h, 10):
        left = 0
        while left < w:
            for g in words[rng.integers(0, 6)]:
                page[top:top + 7, left:left + 5] = glyphs[g]
                left += 6
            left += 4
    return np.ascontiguousarray(page[:h, :w, None])


def _glyph_page(h: int, w: int, seed: int) -> np.ndarray:
    """Four seeded 4x5 glyphs set in lines, 255 on 0: a made page of text, (h, w, 1)."""
    rng = np.random.default_rng(seed)
    glyphs = rng.random((4, 5, 4)) < 0.5
    page = np.zeros((h + 5, w + 4), np.uint8)
    for top in range(0, h, 6):
        for left in range(0, w, 5):
            page[top:top + 5, left:left + 4] = glyphs[rng.integers(0, 4)]
    return np.ascontiguousarray(page[:h, :w, None] * 255)


@needs_c
def test_the_template_level_codes_a_page_of_glyphs_in_fewer_bytes():
    """On a page of repeated glyphs, level 14's templates take fewer bytes than level 13's six to nine neighbours, on a
    page of repeated words level 15's match model fewer than level 14, and on the same words anti-aliased level 16
    fewer than level 13 (deterministic counts, no timing)."""
    px = _glyph_page(96, 160, 7)
    params = np.zeros((px.size, 2), np.int64)
    with_templates = len(native.adaptive_encode_known(px, params, _cdf(), 2, 14))
    assert with_templates < 0.9 * len(native.adaptive_encode_known(px, params, _cdf(), 2, 13))
    px = _word_page(96, 160, 7)                           # words recur: level 15's match model predicts them
    words = [len(native.adaptive_encode_known(px, params, _cdf(), 2, lv)) for lv in (14, 15)]
    assert words[1] < 0.95 * words[0]                     # 346 -> 321 bytes
    px = _word_page(96, 160, 7, greys=9)                  # anti-aliased: level 16 centres on the match's value
    grey = [len(native.adaptive_encode_known(px, params, _cdf(), 2, lv)) for lv in (13, 16)]
    assert grey[1] < 0.85 * grey[0]                       # 1 270 -> 1 021 bytes
