"""Row LSTM, Diagonal BiLSTM and multi-scale models: the same properties the PixelCNN must have
(tests/test_engine.py), plus the receptive fields of the paper's figure 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import float_and_integer_bits, make_tiny_model
from test_engine import assert_same_tables, decoder_stream, encoder_stream
from pixzip.backends import codec
from pixzip.nets import modelfile
from pixzip.spec.config import ModelConfig
from pixzip.training.registry import build_model

ARCHS = ["rowlstm", "diagbilstm"]


def tiny_rnn(arch, channels=3, seed=0, **kw):
    kw = {"layers": 2, "first_kernel": 3, "hidden": 6, **kw}
    model, net = make_tiny_model(channels, seed=seed, arch=arch, **kw)
    # through the model file, as a user gets it
    return model, modelfile.parse(modelfile.serialize(net)).net


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("channels,head,extra", [
    (3, "laplace", {}), (1, "laplace", {}), (3, "softmax", {}), (3, "laplace", {"skip_kernel": 3}),
    (3, "laplace", {"skips": True}), (3, "softmax", {"residual": False, "skips": True}),
    (1, "laplace", {"row_kernel": 5, "first_kernel": 5, "layers": 1}),
])
def test_encoder_and_decoder_tables_are_identical(arch, channels, head, extra, rng):
    for seed, (h, w) in enumerate([(1, 1), (1, 9), (9, 1), (7, 13)]):
        _, net = tiny_rnn(arch, channels, seed=seed, head=head, **extra)
        plane = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        for tile in (0, 4):
            assert_same_tables(encoder_stream(net, plane, tile), decoder_stream(net, plane, tile))


@pytest.mark.parametrize("arch", ARCHS)
def test_batching_and_grouping_do_not_change_bits(arch, rng):
    """Images of mixed sizes coded together give each its own bytes; any canvas grouping and the
    worker processes decode them."""
    _, net = tiny_rnn(arch, seed=3)
    planes = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(11, 9, 3), (5, 14, 3), (1, 2, 3)]]
    together = codec.encode_planes(net, planes, 6)
    for plane, (streams, _) in zip(planes, together):
        alone, _ = codec.encode_plane(net, plane, 6, max_pixels=36)
        assert all(np.array_equal(a, b) for a, b in zip(streams, alone))
    decoded = codec.decode_planes(net, [p.shape[:2] for p in planes], 6, [s for s, _ in together])
    assert all(np.array_equal(a, b) for a, b in zip(decoded, planes))
    h, w, _ = planes[0].shape
    assert np.array_equal(codec.decode_plane(net, h, w, 6, together[0][0], max_pixels=40), planes[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_integer_model_matches_float_model(arch):
    """After a little training the exported integer LSTM codes within 1% of the float model."""
    cfg = ModelConfig(arch=arch, channels=3, hidden=12, head_hidden=12, layers=1, first_kernel=3, skip_kernel=3)
    float_bits, int_bits, n = float_and_integer_bits(cfg, 16, 80, 50)
    assert float_bits / n < 5.0
    assert abs(int_bits / float_bits - 1) < 0.01


def input_gradient(model, c, i0, j0, H, W, seed=0):
    """|d output(i0, j0, c) / d input| summed over random inputs, (channels, H, W)."""
    torch.manual_seed(seed)
    x = torch.rand(16, model.cfg.channels, H, W, dtype=torch.float64, requires_grad=True)
    model.raw_head(x)[:, c, :, i0, j0].sum().backward()
    return x.grad.abs().sum(0)


def row_lstm_field(cfg: ModelConfig, i0: int, j0: int, H: int, W: int) -> np.ndarray:
    """The pixels a Row LSTM output can see, by the paper's construction: the mask-A first layer's
    window, then per layer the k x 1 input-to-state along the row (left and centre) and the k x 1
    state-to-state over the previous row, recursively (the triangle of figure 2)."""
    p1, pr = cfg.first_kernel // 2, cfg.row_kernel // 2
    state = np.zeros((H, W), bool)       # positions whose layer-l state feeds the output
    stream = np.zeros((H, W), bool)      # positions of the layer-l input stream that feed it
    stream[i0, j0] = True
    for _ in range(cfg.layers):
        state[:] = False
        frontier = stream.copy()
        while frontier.any():            # h(i, j) <- h(i-1, j-pr .. j+pr)
            state |= frontier
            nxt = np.zeros_like(frontier)
            for i, j in zip(*np.nonzero(frontier)):
                if i > 0:
                    nxt[i - 1, max(0, j - pr):j + pr + 1] = True
            frontier = nxt & ~state
        stream = np.zeros_like(stream)     # (the residual path adds nothing: the centre tap is here)
        for i, j in zip(*np.nonzero(state)):
            stream[i, max(0, j - pr):j + 1] = True
    seen = np.zeros((H, W), bool)
    for i, j in zip(*np.nonzero(stream)):
        seen[max(0, i - p1):i, max(0, j - p1):j + p1 + 1] = True
        seen[i, max(0, j - p1):j] = True
    return seen


@pytest.mark.parametrize("arch,layers,k1,skips", [("rowlstm", 2, 3, False), ("rowlstm", 1, 5, True),
                                                 ("diagbilstm", 1, 3, False), ("diagbilstm", 2, 3, True)])
def test_receptive_field_is_the_papers(arch, layers, k1, skips):
    """Nothing from the future (later pixels, later channels of the same pixel); the Diagonal BiLSTM
    sees every earlier pixel, the Row LSTM exactly its triangle."""
    cfg = ModelConfig(arch=arch, channels=3, hidden=12, head_hidden=12, layers=layers, first_kernel=k1,
                      head="softmax", skips=skips)
    torch.manual_seed(1)
    model = build_model(cfg).double()
    H, W, i0, j0 = 8, 9, 5, 4
    for c in range(3):
        g = input_gradient(model, c, i0, j0, H, W).numpy()
        for cc in range(3):
            for i in range(H):
                for j in range(W):
                    past = i < i0 or (i == i0 and j < j0) or (i == i0 and j == j0 and cc < c)
                    assert past or g[cc, i, j] == 0, f"future sub-pixel {(cc, i, j)} seen by {(c, i0, j0)}"
        for cc in range(c):
            assert g[cc, i0, j0] > 0, "missing an earlier channel of the same pixel"
        seen = g.sum(0) > 0
        seen[i0, j0] = False
        if arch == "diagbilstm":
            past = np.zeros((H, W), bool)
            past[:i0] = True
            past[i0, :j0] = True
            assert np.array_equal(seen, past), "the Diagonal BiLSTM must see the whole causal past"
        else:
            assert np.array_equal(seen, row_lstm_field(cfg, i0, j0, H, W))


def test_bilevel_model_codes_mode_1_images(rng):
    """A 2-level model (the paper's binarized MNIST setting) codes bilevel planes as 0/1 symbols."""
    _, net = tiny_rnn("diagbilstm", 1, seed=4, head="softmax", levels=2)
    plane = (rng.random((10, 7, 1)) < 0.3).astype(np.uint8) * 255
    streams, bits = codec.encode_plane(net, plane, 0)
    assert np.array_equal(codec.decode_plane(net, 10, 7, 0, streams), plane)
    assert bits / plane.size < 1.5                      # two symbols: about a bit each, not eight
    freq = next(codec.encoder_tables(net, [plane], 0))[3]
    assert freq.shape[1] == 2


def tiny_multiscale(seed=0, channels=3, **kw):
    kw = {"arch": "multiscale", "blocks": 1, "layers": 1, "first_kernel": 3, **kw}
    model, net = make_tiny_model(channels, seed=seed, **kw)
    return model, modelfile.parse(modelfile.serialize(net)).net


def multiscale_streams(net, plane, tile):
    """Encoder and decoder (symbol, table) sequences of both stages; small-stage tiles keyed -1-n."""
    small = net.subsample(plane)
    enc = []
    for (_, n), symbols, _, freq in codec.encoder_tables(net.small, [small], tile):
        enc += [(-1 - n, int(s), f) for s, f in zip(symbols, freq)]
    for (_, n), symbols, _, freq in codec.encoder_tables(net.big, [plane], tile, conds=[small]):
        enc += [(n, int(s), f) for s, f in zip(symbols, freq)]
    per_tile, cursor, dec = {}, {}, []
    for n, s, _ in enc:
        per_tile.setdefault(n, []).append(s)

    def choose(n, freq, where):
        k = cursor.get(n, 0)
        vals = np.array(per_tile[n][k:k + len(freq)])
        cursor[n] = k + len(freq)
        dec.extend((n, int(v), f.clone()) for v, f in zip(vals, freq))
        return vals

    out = codec.wavefront_decode(net, plane.shape[0], plane.shape[1], tile, choose)
    assert np.array_equal(out, plane)
    return enc, dec


@pytest.mark.parametrize("small_arch,channels,head", [("pixelcnn", 3, "laplace"), ("pixelcnn", 1, "softmax"),
                                                      ("rowlstm", 3, "laplace"), ("diagbilstm", 1, "laplace")])
def test_multiscale_tables_are_identical(small_arch, channels, head, rng):
    """Both stages: the conditional model's tables agree between encoder and decoder too."""
    for seed, (h, w) in enumerate([(1, 1), (1, 9), (9, 1), (7, 13)]):
        _, net = tiny_multiscale(seed, channels, small_arch=small_arch, head=head, skip_kernel=3 if head == "laplace" else 0)
        plane = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        for tile in (0, 4):
            enc, dec = multiscale_streams(net, plane, tile)
            assert_same_tables(enc, dec)


def test_multiscale_file_carries_both_stages(rng):
    _, net = tiny_multiscale(5, scale=3)
    plane = rng.integers(0, 256, (10, 8, 3), dtype=np.uint8)
    streams, _ = codec.encode_plane(net, plane, 6)
    assert len(streams) == len(codec.tile_grid(4, 3, 6)) + len(codec.tile_grid(10, 8, 6)) == 1 + 4
    assert np.array_equal(codec.decode_plane(net, 10, 8, 6, streams), plane)
    with pytest.raises(ValueError, match="multiple"):
        codec.encode_plane(net, plane, 4)


def test_conditional_model_is_causal_in_the_full_image():
    """The full-resolution stage sees the whole small image but only the causal past of the full one."""
    torch.manual_seed(2)
    cfg = ModelConfig(channels=3, hidden=12, head_hidden=12, blocks=2, first_kernel=3, head="softmax", cond=6)
    model = build_model(cfg).double()
    H, W, i0, j0 = 8, 9, 5, 4
    for c in range(3):
        x = torch.rand(8, 3, H, W, dtype=torch.float64, requires_grad=True)
        small = torch.rand(8, 3, 4, 5, dtype=torch.float64, requires_grad=True)
        model.raw_head(x, small)[:, c, :, i0, j0].sum().backward()
        g = x.grad.abs().sum(0)
        for cc in range(3):
            for i in range(H):
                for j in range(W):
                    past = i < i0 or (i == i0 and j < j0) or (i == i0 and j == j0 and cc < c)
                    assert past or g[cc, i, j] == 0
        # the small image reaches (i0, j0) through its own block and the blocks of the causal past:
        # blocks wholly in the future (rows below i0's) are not seen
        gs = small.grad.abs().sum((0, 1))
        assert gs[i0 // 2, j0 // 2] > 0
        assert gs[i0 // 2 + 1:].sum() == 0


def test_multiscale_integer_model_matches_float_model():
    cfg = ModelConfig(arch="multiscale", channels=3, hidden=12, head_hidden=12, blocks=1, first_kernel=3, skip_kernel=3)
    float_bits, int_bits, n = float_and_integer_bits(cfg, 16, 120, 80)
    assert float_bits / n < 6.0          # (random: ~8; both stages counted)
    assert abs(int_bits / float_bits - 1) < 0.01


def test_lstm_cell_int32_arithmetic_cannot_overflow():
    """The engine's cell runs in int32; against the same formulas in int64, at the extremes of every
    input (gates saturated both ways, cell state at +-16), the integers are identical."""
    from pixzip.nets.rnn import IntDiagBiLSTM, gate_tables
    from pixzip.spec.fixed_point import CELL_FRAC, CELL_MAX, GATE_RANGE
    t = gate_tables()
    cell = IntDiagBiLSTM.__new__(IntDiagBiLSTM)
    cell.S, cell.sigmoid, cell.tanh = 8, t["sigmoid"].int(), t["tanh"].int()
    sig, tanh = t["sigmoid"].long(), t["tanh"].long()
    g = torch.Generator().manual_seed(0)
    z = torch.randint(-2 ** 15, 2 ** 15, (6000, 32), generator=g, dtype=torch.int32)
    z[::3] = torch.randint(-300, 300, (2000, 32), generator=g, dtype=torch.int32)
    z[::11], z[1::11] = GATE_RANGE - 1, -GATE_RANGE
    c = torch.randint(-CELL_MAX * CELL_FRAC, CELL_MAX * CELL_FRAC + 1, (6000, 8), generator=g, dtype=torch.int32)
    c[::7], c[1::7] = CELL_MAX * CELL_FRAC, -CELL_MAX * CELL_FRAC
    h, c_new = cell.lstm_cell(z, c)
    idx = z.long().clamp(-GATE_RANGE, GATE_RANGE - 1) + GATE_RANGE
    i, f, o, gg = sig[idx[:, :8]], sig[idx[:, 8:16]], sig[idx[:, 16:24]], tanh[idx[:, 24:]]
    ref_c = (((f * c.long() + (1 << 14)) >> 15) + ((i * gg + (1 << 17)) >> 18)).clamp(-CELL_MAX * CELL_FRAC,
                                                                                      CELL_MAX * CELL_FRAC)
    ref_h = ((o * tanh[((ref_c + 64) >> 7).clamp(-GATE_RANGE, GATE_RANGE - 1) + GATE_RANGE] + (1 << 22)) >> 23)
    assert torch.equal(c_new.long(), ref_c) and torch.equal(h.long(), ref_h.clamp(-127, 127))
