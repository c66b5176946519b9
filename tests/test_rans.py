"""The rANS lanes of format v3 (pixzip/rans.py) and their layout in the codec: exact round trips,
tables in both forms agreeing, the pass bound that makes decoding vectorised, and corrupt streams
refused rather than decoded into garbage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_model
from pixzip.backends import codec
from pixzip.entropy import rans
from pixzip.entropy.tables import DenseTables


def random_tables(rng, n: int, levels: int) -> np.ndarray:
    """Cumulative frequencies of n random tables like the engine's: entries in [1, 2^16]."""
    kind = rng.integers(0, 3, n)
    freq = np.where(kind[:, None] == 0, rng.integers(1, 1 << 16, (n, levels)),        # anything
                    np.where(kind[:, None] == 1, 1, 1 << 16))                           # floors / flat
    spike = rng.integers(0, levels, n)
    freq[np.arange(n), spike] = 1 << 16                                                 # a peak each
    return np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(freq, 1)], 1)


@pytest.mark.parametrize("levels", [2, 256])
def test_quantised_tables_keep_every_symbol_and_sum_to_the_coder_total(levels, rng):
    cum = random_tables(rng, 500, levels)
    q = rans.quantise(cum, cum[:, -1:])
    assert (q[:, 0] == 0).all() and (q[:, -1] == rans.LOW).all()
    assert (np.diff(q, axis=1) >= 1).all()


def decode_in_order(states, written, words, lane, tables):
    """The decoder one symbol at a time in the given order, each lane reading back its own words."""
    x = states.copy()
    out = np.empty(len(lane), dtype=np.int64)
    for n in range(len(lane)):
        sym, y, need = rans.decode_step(x[lane[n:n + 1]], tables[n:n + 1])
        assert need[0] == written[n]
        x[lane[n]] = rans.refill(y, need, words[n:n + 1])[0]
        out[n] = sym[0]
    return out, x


@pytest.mark.parametrize("n_lanes", [1, 3, 17])
def test_lanes_round_trip_any_interleaving(n_lanes, rng):
    n, levels = 3000, 256
    cum = random_tables(rng, n, levels)
    tables = DenseTables(cum)
    symbols = rng.integers(0, levels, n)
    symbols[:100] = 0                                  # also the first and last symbol of a table
    symbols[100:200] = levels - 1
    lane = rng.integers(0, n_lanes, n)
    lo = rans.quantise(tables.at(symbols), tables.total)
    freq = rans.quantise(tables.at(symbols + 1), tables.total) - lo
    states, written, words = rans.encode_lanes(lo, freq, lane, n_lanes)
    assert ((states >= rans.LOW) & (states < rans.LOW << rans.WORD_BITS)).all()
    decoded, final = decode_in_order(states, written, words, lane, tables)
    assert np.array_equal(decoded, symbols)
    assert (final == rans.LOW).all()                   # every lane back where the encoder started
    ideal = np.sum(np.log2(tables.total) - np.log2(tables.at(symbols + 1) - tables.at(symbols)))
    stored = 32 * written.sum() + 56 * n_lanes
    assert stored < ideal + 56 * n_lanes + 64          # the coder adds little beyond the lanes' states


@pytest.mark.parametrize("head", ["laplace", "softmax"])
def test_prefix_tables_equal_the_full_tables(head, rng):
    """A Laplace table's cumulative frequencies from the prefix sums (what the coder reads) equal the
    cumulative sums of the frequency table the engine builds, and both locate the same symbols."""
    _, net = make_tiny_model(3, head=head)
    D = net.cfg.head_dim
    if head == "laplace":
        params = torch.stack([torch.from_numpy(rng.integers(0, 4081, 400)),
                              torch.from_numpy(rng.integers(0, len(net.invb_table), 400))], 1).to(torch.int32)
    else:
        params = torch.from_numpy(rng.integers(-3000, 3000, (400, D))).to(torch.int32)
    tables = net.cdf_tables(params)
    dense = DenseTables(np.concatenate([np.zeros((400, 1), dtype=np.int64),
                                        np.cumsum(net.frequencies(params).numpy().astype(np.int64), 1)], 1))
    k = np.arange(257)
    assert np.array_equal(np.stack([tables.at(np.full(400, i)) for i in k], 1), dense.cum)
    bound = 1 + (rng.random(400) * dense.total).astype(np.int64)
    for a, b in zip(tables.locate(bound), dense.locate(bound)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("slope", [1, 2, 4, 1 << 20])
@pytest.mark.parametrize("h,w", [(1, 1), (5, 40), (32, 32), (128, 128), (128, 37), (300, 200)])
def test_no_lane_has_more_than_passes_symbols_in_a_sub_step(h, w, slope):
    K = codec.lanes_per_tile(h, w, slope)
    i, j = np.divmod(np.arange(h * w), w)
    t = j + slope * i
    for wave in np.unique(t):
        lanes = np.bincount(i[t == wave] % K)
        assert lanes.max() <= codec.PASSES
    if h * w > 1:
        assert K == 1 or np.bincount(i[t == np.bincount(t).argmax()] % (K - 1)).max() > codec.PASSES


def coded(rng, tile=16, size=(40, 37)):
    _, net = make_tiny_model(3, stream_bits=16, slope=2, blocks=2)
    plane = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    (streams, _), = codec.encode_planes(net, [plane], tile)
    return net, plane, streams


def test_any_batching_decodes_the_same_pixels(rng):
    """Lanes of tiles decoded alone, in pairs, all together or in worker processes: same pixels."""
    net, plane, streams = coded(rng)
    for max_pixels in (256, 600, codec.MAX_BATCH_PIXELS):
        out = codec.decode_planes(net, [plane.shape[:2]], 16, [streams], max_pixels=max_pixels)[0]
        assert np.array_equal(out, plane)


def test_v2_and_v3_code_the_same_pixels(rng):
    net, plane, _ = coded(rng)
    for coder in codec.CODERS:
        (streams, bits), = codec.encode_planes(net, [plane], 16, coder=coder)
        assert np.array_equal(codec.decode_planes(net, [plane.shape[:2]], 16, [streams], coder=coder)[0], plane)


def lanes_on_device(monkeypatch):
    """Decode with the lanes as the GPU runs them (`_DeviceLanes`, torch), here on the CPU; returns a
    counter of their sub-steps, so a test can tell that they ran."""
    calls = {"decode": 0}
    decode = codec._DeviceLanes.decode

    def counted(self, params):
        calls["decode"] += 1
        return decode(self, params)

    monkeypatch.setattr(codec, "_lanes_on_device", lambda model: True)
    monkeypatch.setattr(codec._DeviceLanes, "decode", counted)
    return calls


LANE_CONFIGS = [dict(channels=3, stream_bits=16, slope=2), dict(channels=1), dict(channels=3, head="softmax"),
                dict(channels=3, stream_bits=16, channel_deps="skip", skip_kernel=3)]


@pytest.mark.parametrize("kw", LANE_CONFIGS)
def test_lanes_on_the_device_decode_what_the_host_lanes_decode(kw, rng, monkeypatch):
    """The GPU's decoder (the lanes in torch, every wavefront padded and laid out pass by pass, the
    decoded values written by the step itself) against the host's: the same pixels, for several
    planes of mixed sizes in one batch, tiles cut several ways, heads and channel structures."""
    _, net = make_tiny_model(**kw, hidden=12, blocks=2)
    C = net.cfg.channels
    planes = [rng.integers(0, 256, (h, w, C), dtype=np.uint8) for h, w in [(23, 41), (1, 9), (16, 16), (30, 3)]]
    shapes = [p.shape[:2] for p in planes]
    for tile in (0, 8, 16):
        streams = [s for s, _ in codec.encode_planes(net, planes, tile)]
        calls = lanes_on_device(monkeypatch)
        for max_pixels in (300, codec.MAX_BATCH_PIXELS):
            for got, want in zip(codec.decode_planes(net, shapes, tile, streams, max_pixels=max_pixels), planes):
                assert np.array_equal(got, want)
        assert calls["decode"] > 0
        monkeypatch.undo()


@pytest.mark.parametrize("kw", LANE_CONFIGS)
def test_lockstep_on_the_device_writes_the_same_bytes(kw, rng, monkeypatch):
    """The GPU's encoder (the lanes' lockstep in torch, `_encode_lanes_here`), run here eagerly: the
    same streams and the same ideal bits as numpy's lockstep, grouped any way."""
    _, net = make_tiny_model(**kw, hidden=12, blocks=2)
    planes = [rng.integers(0, 256, (h, w, net.cfg.channels), dtype=np.uint8) for h, w in [(23, 41), (1, 9), (30, 3)]]
    host = codec.encode_planes(net, planes, 8)
    monkeypatch.setattr(codec, "_lanes_on_device", lambda model: True)
    for group in (codec.CODER_SYMBOLS_HERE, 700):
        monkeypatch.setattr(codec, "CODER_SYMBOLS_HERE", group)
        here = codec._encode_on_device(net, planes, 8, None, codec.MAX_BATCH_PIXELS, 1, "rans")
        for (s1, b1), (s2, b2) in zip(host, here):
            assert len(s1) == len(s2) and all(np.array_equal(a, b) for a, b in zip(s1, s2)) and b1 == b2


def assert_corruption_refused(net, plane, streams, tile, rng):
    """Truncated streams, words to spare, no room for the states: ValueError; of 20 single flipped
    bits, at least 15 refused and none decoded to the original pixels."""
    shape = [plane.shape[:2]]
    for bad in ([s[:-1] for s in streams], [np.r_[s, np.uint32(7)] for s in streams], [s[:1] for s in streams]):
        with pytest.raises(ValueError):
            codec.decode_planes(net, shape, tile, [bad])
    refused = 0
    for n in range(20):
        bad = [s.copy() for s in streams]
        k = n % len(bad)
        bad[k][rng.integers(0, len(bad[k]))] ^= np.uint32(1 << int(rng.integers(0, 32)))
        try:
            out = codec.decode_planes(net, shape, tile, [bad])[0]
        except ValueError:
            refused += 1
        else:
            assert not np.array_equal(out, plane) or np.array_equal(bad[k], streams[k])
    assert refused >= 15


@pytest.mark.parametrize("where", ["host", "device"])
def test_corrupt_streams_are_refused(rng, where, monkeypatch):
    """A lane that runs out of words, a stream with words to spare, or changed words: ValueError
    (or, for a change the lanes cannot see, other pixels, which the file's checksums catch); by the
    lanes on the host and by the lanes as the GPU runs them."""
    net, plane, streams = coded(rng)
    if where == "device":
        lanes_on_device(monkeypatch)
    assert_corruption_refused(net, plane, streams, 16, rng)


def test_padded_steps_of_the_gpu_path_decode_the_same_pixels(rng, monkeypatch):
    """The CUDA-graph decoder pads every wavefront to the widest with a sink pixel in a tile of its
    own; run eagerly here (no capture on the CPU), the padding must not change a pixel, for both
    coders and with tiles of several sizes in one batch."""
    net, plane, _ = coded(rng, tile=16, size=(40, 37))
    monkeypatch.setattr(codec, "_use_graphs", lambda model: True)
    for coder in codec.CODERS:
        (streams, _), = codec.encode_planes(net, [plane], 16, coder=coder)
        out = codec.decode_planes(net, [plane.shape[:2]], 16, [streams], coder=coder)[0]
        assert np.array_equal(out, plane)


def test_lockstep_groups_do_not_change_the_bytes(rng, monkeypatch):
    """The encoder codes a batch's tiles in lockstep groups of bounded size (memory): any grouping,
    the same streams and the same ideal bits."""
    net, plane, streams = coded(rng)
    monkeypatch.setattr(codec, "CODER_SYMBOLS", 500)        # about one 16x16 tile a group
    (again, _), = codec.encode_planes(net, [plane], 16)
    assert len(again) == len(streams) and all(np.array_equal(a, b) for a, b in zip(again, streams))


def test_an_invalid_range_code_is_a_value_error_not_an_assertion():
    """Found by fuzz/harness.py: words no range encoder could write made constriction raise its
    AssertionError, which escaped `pixzip decompress` as a traceback. The decoder's step turns it
    into the ValueError the codec reports as a corrupt stream. (Seeded: the 19th draw is such words.)"""
    import torch
    from pixzip.entropy import range_coder
    rng = np.random.default_rng(0)
    raised = 0
    for _ in range(40):
        words = rng.integers(0, 2 ** 32, rng.integers(1, 6), dtype=np.uint64).astype(np.uint32)
        p = rng.random((50, 256))
        choose = range_coder.tile_decoders({0: words})
        try:
            choose(0, torch.from_numpy(p / p.sum(1, keepdims=True)), None)
        except ValueError:
            raised += 1
    assert raised > 0
