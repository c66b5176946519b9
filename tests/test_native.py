"""The native CPU coder (pixzip/_native.c) computes the integer engine's numbers: every head output
equal to the engine's (the decoder's walk and the encoder's dense pass), files decoded to the same
pixels as the torch decoder and encoded to the same bytes, with both of its product kernels, in any
number of threads, and corrupt streams refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_model
from test_rans import assert_corruption_refused
from pixzip import zoo
from pixzip.efforts import EFFORTS
from pixzip.backends import codec, native
from pixzip.nets import modelfile
from pixzip.nets.ensemble import IntEnsemble
from pixzip.nets.pixelcnn import IntPixelCNN
from pixzip.spec.tables import laplace_start
from pixzip.errors import PixzipError

pytestmark = pytest.mark.skipif(not native.available(), reason="the native decoder is not built here")

KERNELS = ["plain", "best"]
SAMPLE = Path(__file__).resolve().parents[1] / "docs" / "sample.png"


@pytest.fixture(params=KERNELS)
def kernel(request):
    """Run a test with each product kernel ('best' is AVX512-VNNI where the CPU has it)."""
    native.use_kernel(request.param)
    yield request.param
    native.use_kernel("best")


def tiny(channels=3, hidden=12, seed=0, **kw):
    _, net = make_tiny_model(channels, hidden=hidden, seed=seed, blocks=2, stream_bits=16, slope=2,
                             skip_kernel=5, **kw)
    return net


def decoding_order(h: int, w: int, channels: int, slope: int) -> np.ndarray:
    """Flat indices (i * w + j) * channels + c of a tile's sub-pixels in the decoding order."""
    i, j = np.divmod(np.arange(h * w), w)
    t = j + slope * i
    pixels = np.lexsort((i, t))                      # by wavefront, then row
    bounds = np.flatnonzero(np.r_[True, np.diff(t[pixels]) != 0, True])
    return np.concatenate([pixels[a:b] * channels + c for a, b in zip(bounds[:-1], bounds[1:])
                           for c in range(channels)])


def engine_params(net: IntPixelCNN, plane: np.ndarray) -> np.ndarray:
    """The engine's head outputs (the encoder's pass) of every sub-pixel, flat (i, j, c) order."""
    canvas, _ = codec._load_batch(net, [(0, 0, 0, *plane.shape[:2])], [plane])
    tiles, ii, jj = canvas.pixels()
    params = net.encode_params(canvas, canvas.flat(tiles, ii, jj))     # (n, channels, 2)
    return params.reshape(-1, 2).numpy()


@pytest.mark.parametrize("channels,hidden", [(3, 12), (3, 6), (1, 8), (3, 48)])
@pytest.mark.parametrize("size", [(1, 1), (2, 9), (13, 5), (20, 23)])
def test_head_outputs_equal_the_engines(channels, hidden, size, kernel, rng):
    """Every sub-pixel's (mu16, log-scale index), integer for integer, from the decoder's walk and from
    the encoder's dense pass (rows of 8 pixels per product and a remainder): hidden widths with and
    without whole quads per pixel (the gathered and the direct reads), one and three channels."""
    net = tiny(channels, hidden, seed=hidden)
    assert native.supports(net)
    plane = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
    want = engine_params(net, plane)[decoding_order(*size, channels, net.slope)]
    assert np.array_equal(native.tile_params(net, plane), want)
    assert np.array_equal(native.dense_params(net, plane), want)


@pytest.mark.parametrize("slope,first_kernel", [(3, 5), (5, 5), (None, 7)])
def test_head_outputs_equal_the_engines_at_other_slopes(slope, first_kernel, kernel, rng):
    """The walk models a wavefront's rows 8 at a time, the next one `slope` columns left: other slopes
    (None: the kernels' own, 4 for a 7x7 first layer) and wavefronts of more than 8 rows, as full
    batches and remainders, give the engine's integers; files round-trip."""
    _, net = make_tiny_model(3, hidden=9, seed=4, blocks=2, stream_bits=16, slope=slope, skip_kernel=5,
                             first_kernel=first_kernel)
    assert native.supports(net) and net.slope == (slope or 4)
    plane = rng.integers(0, 256, (23, 41, 3), dtype=np.uint8)
    want = engine_params(net, plane)[decoding_order(23, 41, 3, net.slope)]
    assert np.array_equal(native.tile_params(net, plane), want)
    assert np.array_equal(round_trip(net, plane, 0)[1], plane)


def round_trip(net, plane, tile, workers=1):
    (streams, _), = codec.encode_planes(net, [plane], tile)
    return streams, codec.decode_planes(net, [plane.shape[:2]], tile, [streams], workers=workers)[0]


@pytest.mark.parametrize("tile", [16, 0])
def test_files_decode_to_the_same_pixels_as_the_torch_decoder(tile, kernel, rng, monkeypatch):
    net = tiny()
    plane = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    streams, ours = round_trip(net, plane, tile)
    assert np.array_equal(ours, plane)
    monkeypatch.setattr(native, "_LIB", None)          # the torch decoder, same streams
    assert not native.supports(net)
    assert np.array_equal(codec.decode_planes(net, [plane.shape[:2]], tile, [streams])[0], plane)


def test_threads_do_not_change_the_pixels(rng):
    net = tiny()
    plane = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for workers in (1, 2, 5):
        assert np.array_equal(round_trip(net, plane, 16, workers)[1], plane)


def test_corrupt_streams_are_refused(rng):
    """As the torch decoder refuses them (tests/test_rans.py): a lane out of words, words to spare,
    no room for the states, flipped bits."""
    net = tiny()
    plane = rng.integers(0, 256, (40, 37, 3), dtype=np.uint8)
    (streams, _), = codec.encode_planes(net, [plane], 16)
    assert_corruption_refused(net, plane, streams, 16, rng)


@pytest.mark.parametrize("name", ["pcnn-rgb-v7", "pcnn-rgb-small-v5", "pcnn-gray-v2"])
def test_shipped_models_equal_the_engine_on_a_photo(name, kernel):
    """The models users run, on a crop of the sample photograph: the same head outputs as the engine
    and an exact round trip."""
    net = zoo.load_model(str(zoo.SHIPPED / f"{name}.pxm")).net
    assert native.supports(net)
    image = Image.open(SAMPLE).convert("RGB" if net.cfg.channels == 3 else "L")
    plane = np.asarray(image)[:24, :30].reshape(24, 30, net.cfg.channels)
    want = engine_params(net, plane)[decoding_order(24, 30, net.cfg.channels, net.slope)]
    assert np.array_equal(native.tile_params(net, plane), want)
    assert np.array_equal(native.dense_params(net, plane), want)
    assert np.array_equal(round_trip(net, plane, 16)[1], plane)


@pytest.mark.parametrize("kw", [dict(stream_bits=8), dict(skip_kernel=0), dict(head="softmax", skip_kernel=0)])
def test_other_models_take_the_torch_path(kw, rng):
    args = dict(hidden=12, blocks=2, stream_bits=16, slope=2, skip_kernel=5)
    args.update(kw)
    _, net = make_tiny_model(3, **args)
    assert not native.supports(net)
    plane = rng.integers(0, 256, (20, 18, 3), dtype=np.uint8)
    assert np.array_equal(round_trip(net, plane, 16)[1], plane)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("tile", [16, 0])
def test_the_native_encoder_writes_the_bytes_of_the_engine(channels, tile, kernel, rng, monkeypatch):
    """The native encoder (dense pass, lanes in C): the same streams and ideal bits as the engine's pass
    with the numpy lanes, several tiles and sizes, whole planes as one tile, in 1 or 3 threads."""
    net = tiny(channels)
    planes = [rng.integers(0, 256, size, dtype=np.uint8) for size in ((37, 41, channels), (9, 20, channels))]
    ours = [codec.encode_planes(net, planes, tile, workers=n) for n in (1, 3)]
    monkeypatch.setattr(native, "_LIB", None)
    theirs = codec.encode_planes(net, planes, tile)
    for coded in ours:
        for (a, bits_a), (b, bits_b) in zip(coded, theirs):
            assert bits_a == bits_b and len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_encoding_through_the_walk_writes_the_same_bytes(rng):
    """Format v3's other CPU encoder (the walk's head outputs, numpy lanes: what `_batch_symbols`
    serves) and the native one agree."""
    net = tiny()
    plane = rng.integers(0, 256, (30, 35, 3), dtype=np.uint8)
    (ours, bits), = codec.encode_planes(net, [plane], 16)
    (theirs, their_bits), = codec._encode_planes(net, [plane], 16, None, codec.MAX_BATCH_PIXELS)
    assert bits == their_bits and all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def test_the_packed_model_survives_being_sent_to_a_worker(rng):
    """Sending a model to a worker process moves its tensors' storage to shared memory; the native
    decoder's copy of the weights must not point at the old storage (it did once: garbage outputs)."""
    from multiprocessing.reduction import ForkingPickler
    net = tiny()
    plane = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    before = native.tile_params(net, plane)
    ForkingPickler.dumps(net)
    assert np.array_equal(native.tile_params(net, plane), before)


# ---- ensembles (engine.IntEnsemble): the members' equal-weight mixture, native coder only ----

def ensemble(channels=3):
    return IntEnsemble([tiny(channels, 12, seed=1), tiny(channels, 6, seed=2)])


def mixture_widths(net: IntEnsemble, plane: np.ndarray) -> np.ndarray:
    """Each sub-pixel's interval width in the mixture, decoding order, computed here from the members'
    head outputs (the walk's): q_m(k) = floor(C_m(k) 2^24 / S_m), C(k) = floor(sum_m q_m(k) / n)."""
    h, w, C = plane.shape
    symbols = plane.reshape(-1)[decoding_order(h, w, C, net.slope)].astype(np.int64)
    cums = []
    for m in net.members:
        p = native.tile_params(m, plane)
        prefix = m._laplace_prefix().numpy()
        start = laplace_start(p[:, 0], p[:, 1])
        total = prefix[start + 256] - prefix[start]
        cums.append([((prefix[start + symbols + d] - prefix[start]) << 24) // total for d in (0, 1)])
    lo, hi = (sum(c[d] for c in cums) // len(cums) for d in (0, 1))
    return hi - lo


@pytest.mark.parametrize("channels", [3, 1])
def test_an_ensemble_codes_the_mixture_of_its_members(channels, kernel, rng):
    """The native encoder's intervals are the mixture's (computed here from the members' outputs), and
    files decode exactly: tiles of several sizes, whole planes, 1 or 3 threads, both kernels."""
    net = ensemble(channels)
    assert native.supports(net)
    plane = rng.integers(0, 256, (21, 26, channels), dtype=np.uint8)
    _, _, total, width = native.encode_tile(net, plane, 2)
    assert np.all(total == 1 << 24) and np.array_equal(width, mixture_widths(net, plane))
    for tile in (16, 0):
        for workers in (1, 3):
            streams, back = round_trip(net, plane, tile, workers)
            assert np.array_equal(back, plane)
    (_, bits), = codec.encode_planes(net, [plane], 0)
    assert bits == pytest.approx(np.sum(24 - np.log2(width)))


def test_an_ensemble_beats_or_matches_its_members_on_average(rng):
    """A mixture costs at most log2(n) bits a symbol over its best member, and the file is what the
    members' mixture says (no member's table alone)."""
    net = ensemble()
    plane = (np.add.outer(np.arange(24), np.arange(30))[..., None] * [3, 2, 1] % 256).astype(np.uint8)
    bits = codec.encode_planes(net, [plane], 0)[0][1]
    alone = [codec.encode_planes(m, [plane], 0)[0][1] for m in net.members]
    assert bits <= min(alone) + plane.size + 1e-6
    assert bits != alone[0] and bits != alone[1]


def test_corrupt_ensemble_streams_are_refused(rng):
    net = ensemble()
    plane = rng.integers(0, 256, (33, 29, 3), dtype=np.uint8)
    (streams, _), = codec.encode_planes(net, [plane], 16)
    assert_corruption_refused(net, plane, streams, 16, rng)


def test_an_ensemble_model_file_round_trips(tmp_path, rng):
    """Saved and loaded: the same identity and the same bytes coded; a member changed changes the
    identity."""
    net = ensemble()
    path = tmp_path / "mix.pxm"
    model_id = modelfile.save(net, path, {"note": "test"})
    loaded = modelfile.load(path)
    assert isinstance(loaded.net, IntEnsemble) and loaded.id == model_id and len(loaded.net.members) == 2
    plane = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    a, b = (codec.encode_planes(n, [plane], 0)[0][0][0] for n in (net, loaded.net))
    assert np.array_equal(a, b)
    other = IntEnsemble([net.members[0], tiny(3, 6, seed=3)])
    assert modelfile.save(other, tmp_path / "other.pxm") != model_id


def test_ensembles_are_refused_where_they_cannot_run(rng, monkeypatch):
    """One-line errors: format v2's coder, an installation without the native coder, a GPU; members
    that do not share channels or slope."""
    net = ensemble()
    plane = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    with pytest.raises(PixzipError, match="format version 3"):
        codec.encode_planes(net, [plane], 0, coder="range")
    with pytest.raises(ValueError, match="GPU coding is implemented for PixelCNN models, not ensemble"):
        codec.coding_device(net, "cuda")
    assert codec.coding_device(net, "auto") is None
    monkeypatch.setattr(native, "_LIB", None)
    for call in (lambda: codec.encode_planes(net, [plane], 0),
                 lambda: codec.decode_planes(net, [(8, 9)], 0, [[np.zeros(4, np.uint32)]])):
        with pytest.raises(PixzipError, match="native CPU coder"):
            call()
    with pytest.raises(ValueError, match="share channels"):
        IntEnsemble([tiny(3), tiny(1)])
    with pytest.raises(ValueError, match="2 to 4"):
        IntEnsemble([tiny(3)])


def test_the_mixture_reference_gives_the_native_coders_intervals(rng):
    """IntEnsemble.mixture_interval, the package's reference of the mixture, gives the native
    encoder's interval widths (and the derivation of them above), on the members' head outputs."""
    net = ensemble()
    plane = rng.integers(0, 256, (13, 11, 3), dtype=np.uint8)
    h, w, C = plane.shape
    symbols = plane.reshape(-1)[decoding_order(h, w, C, net.slope)]
    lo, hi = net.mixture_interval([native.tile_params(m, plane) for m in net.members], symbols)
    _, _, total, width = native.encode_tile(net, plane, 2)
    assert np.all(total == 1 << 24) and np.all(hi > lo) and np.all(hi <= 1 << 24)
    assert np.array_equal(hi - lo, width) and np.array_equal(hi - lo, mixture_widths(net, plane))


# ---- an ensemble in the adaptive stage: the members' head outputs averaged (adaptive.ensemble_outputs) ----

@pytest.mark.skipif(not native.adaptive_available(), reason="no compiled adaptive stage")
@pytest.mark.parametrize("h, w, level", [(1, 1, 3), (6, 9, 3), (13, 7, 4)])
def test_an_ensemble_in_the_adaptive_stage_codes_the_references_bytes(h, w, level):
    from pixzip.entropy import adaptive
    net = ensemble()
    plane = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    plane[:, :, 1] = plane[:, :, 0] // 2 + 60          # some structure for the stage to learn
    params = adaptive.ensemble_outputs([native.dense_params(m, plane) for m in net.members])
    cdf = net.members[0]._laplace_prefix().numpy()
    ref = adaptive.encode_tile(plane, params, cdf, net.slope, level)
    got = native.encode_tile_adaptive(net, plane, level)
    assert got == ref
    assert got != native.encode_tile_adaptive(net.members[0], plane, level)     # the members do count
    assert np.array_equal(native.decode_tile_adaptive(net, got, h, w, level), plane)   # the walk averages alike


@pytest.mark.skipif(not native.adaptive_available(), reason="no compiled adaptive stage")
@pytest.mark.parametrize("h, w", [(1, 1), (2, 40), (40, 2), (23, 31)])
def test_the_adaptive_walk_in_threads_decodes_the_same_pixels(h, w, kernel):
    """Each wavefront's rows split between threads (adaptive_tiles.c, walk_adaptive), their network beside another's stage:
    for any thread count the walk decodes the encoder's pixels, with one network, an ensemble, a level that reads
    no network (13), a value map's ranks, a chain's carried state, and refuses a damaged stream."""
    from pixzip.entropy.value_map import ValueMap
    rng = np.random.default_rng(h * w)
    plane = np.clip(np.cumsum(rng.integers(-9, 10, (h, w, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    plane[:, :, 2] = plane[:, :, 0] // 3 + 50
    for net, level in [(tiny(), 9), (ensemble(), 10), (tiny(), 13)]:
        data = native.encode_tile_adaptive(net, plane, level)
        for threads in (1, 2, 3, 5, 64):
            assert np.array_equal(native.decode_tile_adaptive(net, data, h, w, level, threads=threads), plane)
        with pytest.raises(ValueError):
            native.decode_tile_adaptive(net, data + bytes(8), h, w, level, threads=2)
        if h * w > 100:                                 # cut short: the parts decode what is left, then refuse it
            with pytest.raises(ValueError):
                native.decode_tile_adaptive(net, data[:len(data) // 2], h, w, level, threads=3)
    vm = ValueMap.of([np.unique(plane[..., c]) for c in range(3)])
    ranks = vm.to_ranks(plane)
    data = native.encode_tile_adaptive(tiny(), ranks, 9, vmap=vm)
    assert np.array_equal(native.decode_tile_adaptive(tiny(), data, h, w, 9, vmap=vm, threads=3), ranks)
    net, lv = tiny(), native.adaptive.level_for(10, tiny())
    state = native.AdaptiveState(lv, 2 * plane.size)
    chain = [native.encode_tile_adaptive(net, t, state=state) for t in (plane, plane[::-1])]
    state = native.AdaptiveState(lv, 2 * plane.size)
    for threads, (data, tile) in zip((2, 3), zip(chain, (plane, plane[::-1]))):
        assert np.array_equal(native.decode_tile_adaptive(net, data, h, w, state=state, threads=threads), tile)


@pytest.mark.skipif(not native.adaptive_available(), reason="no compiled adaptive stage")
def test_the_adaptive_encoder_in_threads_writes_the_same_bytes(kernel):
    """The members' dense passes, then the states' streams, as jobs in threads (adaptive_tiles.c, encode_adaptive)."""
    from pixzip.entropy.value_map import ValueMap
    rng = np.random.default_rng(3)
    plane = np.clip(np.cumsum(rng.integers(-9, 10, (21, 27, 3)), axis=0) + 128, 0, 255).astype(np.uint8)
    net = IntEnsemble([tiny(3, 12, seed=1), tiny(3, 6, seed=2), tiny(3, 9, seed=3)])
    vm = ValueMap.of([np.unique(plane[..., c]) for c in range(3)])
    for pixels, vmap in [(plane, None), (vm.to_ranks(plane), vm)]:
        def coded(threads):
            states = [native.AdaptiveState(native.adaptive.level_for(lv, net), plane.size) for lv in (9, 10, 13)]
            return native.encode_tile_adaptive_states(net, pixels, states, vmap, threads)
        alone = coded(1)
        assert len(set(alone)) == 3
        for threads in (2, 3, 7):
            assert coded(threads) == alone
        assert np.array_equal(native.decode_tile_adaptive(net, alone[1], 21, 27, 10, vmap=vmap, threads=2), pixels)


def test_decoding_splits_a_tiles_wavefronts_where_chains_would_leave_threads_idle():
    from pixzip.backends.adaptive_planes import decode_threads
    assert decode_threads([100], 2, False) == (1, 2)                  # one tile: both threads in it
    assert decode_threads([100, 100, 0], 2, False) == (2, 1)          # equal chains side by side (0: all stored)
    assert decode_threads([512 * 512, 256 * 512], 2, True) == (1, 2)  # an ensemble's 2:1 tiles: in turn, split
    assert decode_threads([512 * 512, 256 * 512], 2, False) == (2, 1)   # one network's: side by side
    assert decode_threads([5, 5, 5], 4, False) == (3, 1)
    assert decode_threads([], 2, True) == (1, 2)


@pytest.mark.skipif(not native.adaptive_available(), reason="no compiled adaptive stage")
def test_an_ensemble_file_at_the_strongest_effort_takes_the_adaptive_stage(tiny_models):
    from pixzip import api, zoo
    from pixzip.formats import images
    rng = np.random.default_rng(5)
    base = np.cumsum(rng.integers(-3, 4, (20, 24, 3)), axis=1) + 128
    image = images.split(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)))
    mix = zoo.load_model(zoo.EFFORT_MODELS[2][3][0])
    data, _ = api.compress(image, [mix], tile=8, effort=9)
    header = api.read_header(data)
    assert header.entropy == [1] and header.levels == [EFFORTS[9].level] and mix.id.startswith(header.models[0].id)
    out, _ = api.decompress(data, [mix])
    assert out.pixel_bytes() == image.pixel_bytes()
