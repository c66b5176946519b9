"""The bit-exactness property: the encoder's one parallel pass and the decoder's incremental wavefront
pass produce the same integer frequency tables, whatever the sizes, tiles, batching and threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import float_and_integer_bits, make_tiny_model
from pixzip.backends import codec
from pixzip.spec.config import ModelConfig
from pixzip.training.export import export
from pixzip.training.registry import build_model


def encoder_stream(net, plane, tile, max_pixels=codec.MAX_BATCH_PIXELS):
    """Every (tile, symbol, frequency table) the encoder codes, in order."""
    out = []
    for (_, number), symbols, _, freq in codec.encoder_tables(net, [plane], tile, max_pixels):
        for s, f in zip(symbols, freq):
            out.append((number, int(s), f))
    return out


def decoder_stream(net, plane, tile, max_pixels=codec.MAX_BATCH_PIXELS):
    """The same, as the decoder sees it: it is fed the true pixels, tile by tile in coding order."""
    per_tile = {}
    cursor = {}
    enc = encoder_stream(net, plane, tile)   # only to know each tile's true symbol sequence
    for number, s, _ in enc:
        per_tile.setdefault(number, []).append(s)
    recorded = []

    def choose(number, freq, where):
        k = cursor.get(number, 0)
        vals = np.array(per_tile[number][k:k + len(freq)])
        cursor[number] = k + len(freq)
        for v, f in zip(vals, freq):
            recorded.append((number, int(v), f.clone()))
        return vals

    out = codec.wavefront_decode(net, plane.shape[0], plane.shape[1], tile, choose, max_pixels=max_pixels)
    assert np.array_equal(out, plane)
    return recorded


def assert_same_tables(enc, dec):
    """Compare per tile (tiles interleave differently in the two passes), integer for integer."""
    assert len(enc) == len(dec)
    key = lambda rows: {n: [(s, f) for m, s, f in rows if m == n] for n in {m for m, _, _ in rows}}
    e, d = key(enc), key(dec)
    assert e.keys() == d.keys()
    for n in e:
        assert [s for s, _ in e[n]] == [s for s, _ in d[n]]
        assert torch.equal(torch.stack([f for _, f in e[n]]), torch.stack([f for _, f in d[n]]))


SIZES = [(1, 1), (1, 9), (9, 1), (7, 13), (12, 5)]


@pytest.mark.parametrize("channels,head,skip,deps", [(3, "laplace", 0, "masks"), (1, "laplace", 0, "masks"),
                                                    (3, "softmax", 0, "masks"), (3, "laplace", 3, "masks"),
                                                    (1, "laplace", 5, "masks"), (3, "laplace", 3, "skip"),
                                                    (1, "laplace", 3, "skip"), (3, "laplace", 3, "skip16"),
                                                    (3, "softmax", 0, "masks16"), (1, "laplace", 3, "masks16"),
                                                    (3, "laplace", 5, "masks16/2"), (1, "laplace", 5, "skip/2"),
                                                    (3, "laplace", 3, "masks/3")])
def test_encoder_and_decoder_tables_are_identical(channels, head, skip, deps, rng):
    """deps: channel structure, then "16" for a 16-bit stream, then "/s" for a trimmed wavefront slope."""
    deps, _, slope = deps.partition("/")
    stream_bits = 16 if deps.endswith("16") else 8
    for seed, (h, w) in enumerate(SIZES):
        _, net = make_tiny_model(channels, head, seed=seed, skip_kernel=skip, channel_deps=deps.removesuffix("16"),
                                 stream_bits=stream_bits, blocks=2, slope=int(slope or 0),
                                 first_kernel=7 if slope else 5)
        plane = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        for tile in (0, 4):
            assert_same_tables(encoder_stream(net, plane, tile), decoder_stream(net, plane, tile))


def test_random_sizes_and_wider_models(rng):
    for seed in range(3):
        h, w = rng.integers(1, 20, size=2)
        _, net = make_tiny_model(3, seed=10 + seed, hidden=9, blocks=2, first_kernel=7)
        plane = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert_same_tables(encoder_stream(net, plane, 6), decoder_stream(net, plane, 6))


def test_threads_do_not_change_tables(rng):
    _, net = make_tiny_model(3, seed=5)
    plane = rng.integers(0, 256, (11, 10, 3), dtype=np.uint8)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = encoder_stream(net, plane, 0)
        torch.set_num_threads(2)
        two = encoder_stream(net, plane, 0)
    finally:
        torch.set_num_threads(old)
    assert_same_tables(one, two)


def test_images_batched_together_code_as_alone(rng):
    """One pass over tiles of several images (mixed sizes) gives each image the bytes it gets alone."""
    _, net = make_tiny_model(3, seed=9, skip_kernel=3)
    planes = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(13, 11, 3), (5, 17, 3), (1, 1, 3)]]
    together = codec.encode_planes(net, planes, 8)
    for plane, (streams, bits) in zip(planes, together):
        alone, alone_bits = codec.encode_plane(net, plane, 8)
        assert len(streams) == len(alone) and all(np.array_equal(a, b) for a, b in zip(streams, alone))
        assert bits == pytest.approx(alone_bits)
        h, w, _ = plane.shape
        assert np.array_equal(codec.decode_plane(net, h, w, 8, streams), plane)


def test_batch_composition_does_not_change_streams(rng):
    """Tiles coded one canvas at a time or all together give identical bytes and decode either way."""
    _, net = make_tiny_model(3, seed=6)
    plane = rng.integers(0, 256, (13, 11, 3), dtype=np.uint8)
    together, _ = codec.encode_plane(net, plane, 4)
    alone, _ = codec.encode_plane(net, plane, 4, max_pixels=16)
    assert len(together) == len(alone) == 12
    assert all(np.array_equal(a, b) for a, b in zip(together, alone))
    for max_pixels in (16, 40, codec.MAX_BATCH_PIXELS):
        out = codec.decode_plane(net, 13, 11, 4, together, max_pixels=max_pixels)
        assert np.array_equal(out, plane)


@pytest.mark.parametrize("skip,deps,stream_bits", [(0, "masks", 8), (3, "masks", 8), (3, "skip", 8),
                                                    (3, "masks", 16), (3, "skip", 16)])
def test_integer_model_matches_float_model(skip, deps, stream_bits):
    """After a little training (peaked distributions, as in real use) the exported integer model
    codes within 2% of the float fake-quantised model's bits. (Measured with one training thread:
    |ratio - 1| <= 0.0067 over these five cases; a different CPU's float kernels may train a slightly
    different model, hence 3x headroom rather than a bound at the largest value seen.)"""
    cfg = ModelConfig(channels=3, hidden=12, head_hidden=12, blocks=1, first_kernel=5, skip_kernel=skip,
                      channel_deps=deps, stream_bits=stream_bits)
    float_bits, int_bits, n = float_and_integer_bits(cfg, 24, 150, 100)
    assert float_bits / n < 4.5          # it did learn something
    assert abs(int_bits / float_bits - 1) < 0.02


@pytest.mark.parametrize("k_first,blocks,deps", [(7, 2, "masks"), (5, 1, "masks"), (3, 3, "masks"),
                                                 (7, 2, "skip")])
def test_receptive_field_is_exactly_the_causal_past(k_first, blocks, deps):
    """d output(i, j, c) / d input is nonzero only on earlier pixels and earlier channels of (i, j),
    and on every pixel the stacked masks can reach (nothing missing)."""
    torch.manual_seed(0)
    cfg = ModelConfig(channels=3, hidden=12, head_hidden=12, blocks=blocks, first_kernel=k_first,
                      skip_kernel=3, channel_deps=deps)
    model = build_model(cfg).double()
    with torch.no_grad():
        model.skip.weight.normal_()          # its initial predictor reads only two neighbours
    H = W = 9
    i0, j0 = 6, 4
    p1 = k_first // 2
    for c in range(3):
        # several random inputs, so that no tap hides behind an inactive ReLU
        x = torch.rand(32, 3, H, W, dtype=torch.float64, requires_grad=True)
        # bypass the uint8 input path to take gradients with respect to the (normalised) image
        y = model.first(x)
        for ca, cb in zip(model.conv_a, model.conv_b):
            y = y + cb(torch.relu(ca(torch.relu(y))))
        out = model.out(torch.relu(model.head1(torch.relu(y)))).view(32, 3, -1, H, W)
        out = out + model.skip(x).unsqueeze(2)          # the linear predictor adds to mu
        out[:, c, :, i0, j0].sum().backward()
        g = x.grad.abs().sum(0)
        for cc in range(3):
            for i in range(H):
                for j in range(W):
                    past = i < i0 or (i == i0 and j < j0) or (i == i0 and j == j0 and cc < c)
                    assert past or g[cc, i, j] == 0, f"future sub-pixel {(cc, i, j)} seen by {(c, i0, j0)}"
        # the full causal neighbourhood of the first layer is present (row above, up to p1 right)
        for dj in range(-p1, p1 + 1):
            if 0 <= j0 + dj < W:
                assert g[:, i0 - 1, j0 + dj].sum() > 0, f"missing pixel {(i0 - 1, j0 + dj)}"
        for dj in range(1, p1 + 1):
            assert g[:, i0, j0 - dj].sum() > 0, f"missing left pixel {(i0, j0 - dj)}"
        for cc in range(c):
            assert g[cc, i0, j0] > 0, "missing an earlier channel of the same pixel"


def test_parallel_decode_equals_serial(rng, monkeypatch):
    """Tiles decoded in worker processes give the same pixels as one process."""
    monkeypatch.setattr(codec, "PARALLEL_MIN_PIXELS", 0)
    _, net = make_tiny_model(3, seed=8, skip_kernel=3)
    plane = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    streams, _ = codec.encode_plane(net, plane, 16)
    assert np.array_equal(codec.decode_plane(net, 37, 29, 16, streams, workers=2), plane)
    assert np.array_equal(codec.decode_plane(net, 37, 29, 16, streams, workers=3), plane)


def test_parallel_encode_equals_serial(rng, monkeypatch):
    """Tiles encoded in worker processes (several images, mixed sizes) give the same bytes."""
    monkeypatch.setattr(codec, "ENCODE_PARALLEL_MIN_PIXELS", 0)
    _, net = make_tiny_model(3, seed=8, skip_kernel=3, stream_bits=16)
    planes = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(37, 29, 3), (5, 40, 3), (1, 1, 3)]]
    serial = codec.encode_planes(net, planes, 16)
    for workers in (2, 3):
        parallel = codec.encode_planes(net, planes, 16, workers=workers)
        for (s1, b1), (s2, b2) in zip(serial, parallel):
            assert len(s1) == len(s2) and all(np.array_equal(a, b) for a, b in zip(s1, s2))
            assert b1 == pytest.approx(b2)


@pytest.mark.parametrize("head", ["laplace", "softmax"])
def test_code_lengths_match_the_tables(head, rng):
    """The reported ideal bits (Laplace: totals from prefix sums) are -log2(freq[s] / sum(freq))."""
    _, net = make_tiny_model(3, head, seed=4)
    plane = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for _, symbols, params, freq in codec.encoder_tables(net, [plane], 0):
        f = freq.numpy().astype(np.float64)
        expected = np.log2(f.sum(axis=1)) - np.log2(f[np.arange(len(symbols)), symbols])
        assert np.allclose(net.code_lengths(params, symbols, freq), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("slope", [2, 3])
def test_trimmed_slope_reads_only_earlier_wavefronts(slope):
    """With cfg.slope = s, output (i, j) depends only on pixels of smaller j + s*i (and on the earlier
    channels of its own pixel), so the decoder may run those wavefronts; and the slope is what the
    engine schedules with."""
    torch.manual_seed(0)
    cfg = ModelConfig(channels=3, hidden=12, head_hidden=12, blocks=3, first_kernel=7, skip_kernel=5, slope=slope)
    model = build_model(cfg).double()
    with torch.no_grad():
        model.skip.weight.normal_()
    H = W = 12
    i0, j0 = 8, 4
    x = torch.rand(16, 3, H, W, dtype=torch.float64, requires_grad=True)
    y = model.first(x)
    for ca, cb in zip(model.conv_a, model.conv_b):
        y = y + cb(torch.relu(ca(torch.relu(y))))
    out = model.out(torch.relu(model.head1(torch.relu(y)))).view(16, 3, -1, H, W) + model.skip(x).unsqueeze(2)
    out[:, 2, :, i0, j0].sum().backward()
    g = x.grad.abs().sum(dim=(0, 1))
    t0 = j0 + slope * i0
    seen = [(i, j) for i in range(H) for j in range(W) if g[i, j] > 0]
    assert all(j + slope * i < t0 or (i, j) == (i0, j0) for i, j in seen)
    assert (i0 - 1, j0 + slope - 1) in seen                  # the trimmed kernel still reaches its edge
    assert export(model).slope == slope


def _requant_both_ways(conv, acc):
    """(float64 path, int64 path) of QConv.requant for accumulators acc (n, cout)."""
    from pixzip.nets import qconv as engine
    conv._split.clear()
    fast = conv.requant(acc.clone(), None)
    assert conv._params(None).scale is not None, "the float64 path should apply here"
    conv._split.clear()
    real = engine.float_requant_exact
    try:
        engine.float_requant_exact = lambda *a: False
        exact = conv.requant(acc.clone(), None)
        assert conv._params(None).scale is None
    finally:
        engine.float_requant_exact = real
        conv._split.clear()
    return fast, exact


def _edge_accumulators(conv, rng, n=20000) -> torch.Tensor:
    """Accumulators at and beside every rounding edge of the output range (for each channel: the z
    whose exact value is k - 1/2 or k - 1/2 +- one unit of z, k in [lo - 2, hi + 2]), values 2^24
    inside the int32 extremes (so that acc + bias, as the engine adds it in int32, cannot overflow) and
    random values."""
    m, sh, b = conv.mult.to(torch.int64), conv.shift.to(torch.int64), conv.bias.to(torch.int64)
    k = torch.arange(conv.lo - 2, conv.hi + 3, dtype=torch.int64)
    if len(k) > 600:     # a 16-bit output: both ends and a sample between
        k = torch.cat([k[:100], k[-100:], k[torch.from_numpy(rng.integers(0, len(k), 400))]])
    k = k[:, None]
    # z * m + 2^(sh-1) = k * 2^sh  <=>  z = (2k - 1) * 2^(sh-1) / m (rounded to a near integer)
    z = (((2 * k - 1) << (sh - 1)[None]) // m.clamp(min=1)[None]) - b[None]
    near = torch.cat([z + d for d in (-2, -1, 0, 1, 2)])
    big = torch.tensor([[-(2 ** 31) + 2 ** 24], [2 ** 31 - 1 - 2 ** 24], [0]], dtype=torch.int64).expand(-1, conv.cout)
    rand = torch.from_numpy(rng.integers(-(2 ** 24), 2 ** 24, size=(n, conv.cout)))
    return torch.cat([near, big, rand]).clamp(-(2 ** 31) + 2 ** 24, 2 ** 31 - 1 - 2 ** 24).to(torch.int32)


def test_float_requantisation_equals_the_integer_one(rng):
    """The CPU's float64 requantisation (engine.float_requant_exact) gives the int64 path's integers
    for every layer of every shipped model, on accumulators at every rounding edge and at the
    extremes; its condition is tight enough that a layer beyond it can differ."""
    from pixzip import zoo
    from pixzip.nets import qconv as engine
    checked = 0
    for name in zoo.available():
        net = zoo.load_model(name).net
        if not hasattr(net, "named_convs"):
            continue
        for _, conv in net.named_convs():
            if int(conv.shift.min()) < 1 or not engine.float_requant_exact(conv.shift, conv.lo, conv.hi):
                continue     # (the output layer is never requantised: its shift is 0)
            fast, exact = _requant_both_ways(conv, _edge_accumulators(conv, rng, 2000))
            assert fast.dtype == exact.dtype and torch.equal(fast, exact), name
            checked += 1
    assert checked >= 50, checked
    # a synthetic layer right at the bound (int16 output, shift 37) and one beyond it
    for shift, ok in ((37, True), (44, False)):
        conv = engine.QConv(1, torch.zeros(1, 4, dtype=torch.int8), torch.tensor([0, 1, -3, 7], dtype=torch.int32),
                            torch.tensor([2 ** 31 - 1, 2 ** 30, 2 ** 30 + 12345, 1999999999]),
                            torch.full((4,), shift), lo=-(2 ** 15), hi=2 ** 15 - 1)
        assert engine.float_requant_exact(conv.shift, conv.lo, conv.hi) == ok
        if ok:
            fast, exact = _requant_both_ways(conv, _edge_accumulators(conv, rng))
            assert torch.equal(fast, exact)
    # beyond the bound the float formula fails: a 32-bit output with shift 31, and z chosen so that
    # z * m + 2^30 is one below a multiple of 2^31 while z * m needs 61 bits (float64 rounds it up)
    m, sh = 2 ** 31 - 1, 31
    assert not engine.float_requant_exact(torch.tensor([sh]), -(2 ** 31), 2 ** 31 - 1)
    z = torch.tensor([((2 ** 30 - 1) * pow(m, -1, 2 ** sh)) % 2 ** sh], dtype=torch.int64)
    exact = engine.requantize(z, torch.tensor([m]), torch.tensor([sh]), -(2 ** 31), 2 ** 31 - 1)
    fast = torch.addcmul(engine.HALF, z.double(), torch.tensor([m * 2.0 ** -sh], dtype=torch.float64)).floor_()
    assert int(fast) == int(exact) + 1


@pytest.mark.parametrize("width,cols", [(48, slice(16, 32)), (48, slice(0, 48)), (3, slice(1, 2)), (12, slice(4, 8))])
def test_wide_word_gathers_and_writes_equal_plain_indexing(width, cols, rng):
    """Scattered's gathers (rows read as int64 words where a row is whole words) and group writes (flat
    64-bit copies where the columns are whole words, else a strided copy) move the same bytes as plain
    row indexing."""
    from pixzip.nets.canvas import Canvas, Scattered, _words, rows
    _, net = make_tiny_model(channels=3)
    canvas = Canvas([(6, 7), (5, 9)], 2, {"b": width})
    buf = canvas.buf["b"]
    buf.copy_(torch.from_numpy(rng.integers(-128, 128, size=buf.shape, dtype=np.int8)))
    pos = torch.from_numpy(rng.choice(len(buf) - 40, 25, replace=False) + 20)
    sites = Scattered(net, canvas, pos)
    assert (rows(buf).dtype == torch.int64) == (width % 8 == 0)
    assert (_words(buf, cols) is not None) == (cols.start % 8 == 0 and cols.stop % 8 == 0 and width % 8 == 0)
    index = sites.index(3)
    assert torch.equal(sites._gather(buf, 3), buf[index.view(-1)].view(len(pos), -1))
    y = torch.from_numpy(rng.integers(-128, 128, size=(len(pos), cols.stop - cols.start), dtype=np.int8))
    expect = buf.clone()
    expect[pos, cols] = y
    sites.write(buf, cols, y)
    assert torch.equal(buf, expect)
