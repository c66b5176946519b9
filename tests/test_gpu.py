"""Coding on a GPU gives the CPU's integers, hence the CPU's bytes: files cross devices both ways.

The CUDA tests skip where torch sees no GPU (CI); `bench/gpu.py` runs the same checks on real photos
with the shipped models and times them. The first tests run everywhere: the float32 products the GPU
path uses are exact integers, and the device plumbing refuses what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import make_tiny_model
from pixzip import api
from pixzip.backends import codec
from pixzip.cli import main
from pixzip.formats.images import ImageData
from pixzip.nets.qconv import float_int_mm
from test_engine import encoder_stream

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 15, 7), (17, 72, 48), (40, 1024, 30), (5, 2500, 9)])
def test_float_products_of_int8_are_exact(m, k, n):
    g = torch.Generator().manual_seed(m * 1000 + k * 10 + n)
    x = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
    w = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=g)
    x[0], w[:, 0] = -128, -128                  # the extreme: every product 2^14, the sum k * 2^14
    want = x.to(torch.int64).mm(w.to(torch.int64))
    assert want.abs().max() < 2 ** 31 and torch.equal(float_int_mm(x, w), want.to(torch.int32))
    if torch.cuda.is_available():
        assert torch.equal(float_int_mm(x.cuda(), w.cuda()).cpu(), want.to(torch.int32))


def test_cpu_placement_is_the_model_itself():
    _, net = make_tiny_model(3)
    assert net.on("cpu") is net and codec.placed(net, None, 5) == (net, 5)


def test_gpu_coding_refuses_other_architectures_in_one_line():
    from test_architectures import tiny_rnn
    _, net = tiny_rnn("rowlstm")
    with pytest.raises(ValueError, match="PixelCNN"):
        net.on("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_request_without_a_gpu_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save("a.png")
    r = CliRunner().invoke(main, ["compress", "a.png", "--device", "cuda"])
    assert r.exit_code == 1 and "no CUDA device" in r.stderr and not (tmp_path / "a.png.pxz").exists()
    r = CliRunner().invoke(main, ["bench", "a.png", "--codecs", "pixzip", "--device", "cuda"])
    assert r.exit_code == 1 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr


@cuda
def test_bench_codes_on_the_gpu(tmp_path, monkeypatch, rng):
    import json
    monkeypatch.chdir(tmp_path)
    Image.fromarray(rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)).save("a.png")
    r = CliRunner().invoke(main, ["bench", "a.png", "--codecs", "pixzip,png", "--device", "cuda", "--json", "b.json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads((tmp_path / "b.json").read_text())
    assert out["meta"]["device"] == "cuda" and all(row["exact"] for row in out["results"])


def tiny(kw):
    return make_tiny_model(**kw, hidden=12, blocks=2, skip_kernel=0 if kw.get("head") == "softmax" else 3)[1]


CONFIGS = [dict(channels=3), dict(channels=1), dict(channels=3, stream_bits=16, slope=2),
           dict(channels=3, stream_bits=16, channel_deps="skip"), dict(channels=3, head="softmax"),
           dict(channels=1, stream_bits=16)]


@cuda
@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("size,tile", [((1, 1), 0), ((7, 13), 4), ((19, 33), 8), ((40, 24), 0)])
def test_gpu_encoder_tables_equal_cpu_tables(kw, size, tile, rng):
    net = tiny(kw)
    plane = rng.integers(0, 256, (*size, net.cfg.channels), dtype=np.uint8)
    cpu = encoder_stream(net, plane, tile)
    gpu = encoder_stream(net.on("cuda"), plane, tile)
    assert [(n, s) for n, s, _ in cpu] == [(n, s) for n, s, _ in gpu]
    assert torch.equal(torch.stack([f for *_, f in cpu]), torch.stack([f for *_, f in gpu]))


@cuda
@pytest.mark.parametrize("kw", CONFIGS)
def test_files_cross_devices_both_ways(kw, rng):
    net = tiny(kw)
    planes = [rng.integers(0, 256, (h, w, net.cfg.channels), dtype=np.uint8) for h, w in [(9, 30), (33, 17), (1, 5)]]
    cpu = codec.encode_planes(net, planes, 8)
    gpu = codec.encode_planes(net, planes, 8, device="cuda")
    for (s_cpu, b_cpu), (s_gpu, b_gpu) in zip(cpu, gpu):
        assert all(np.array_equal(a, b) for a, b in zip(s_cpu, s_gpu)) and b_cpu == b_gpu
    shapes = [p.shape[:2] for p in planes]
    streams = [s for s, _ in gpu]
    for device in ("cpu", "cuda"):
        for got, want in zip(codec.decode_planes(net, shapes, 8, streams, device=device), planes):
            assert np.array_equal(got, want)


@cuda
def test_cli_gpu_file_decodes_on_cpu(tmp_path, monkeypatch, rng):
    """The shipped default model, through the CLI: GPU and CPU write the same file."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(rng.integers(0, 256, (70, 150, 3), dtype=np.uint8)).save("a.png")
    for device in ("cuda", "cpu"):
        r = CliRunner().invoke(main, ["compress", "a.png", "-o", f"{device}.pxz", "--device", device])
        assert r.exit_code == 0, r.stderr
    assert (tmp_path / "cuda.pxz").read_bytes() == (tmp_path / "cpu.pxz").read_bytes()
    r = CliRunner().invoke(main, ["decompress", "cuda.pxz", "-o", "b.png", "--device", "cpu"])
    assert r.exit_code == 0 and np.array_equal(np.asarray(Image.open("b.png")), np.asarray(Image.open("a.png")))
    image = ImageData("RGB", 150, 70, [np.asarray(Image.open("a.png"))])
    decoded, _ = api.decompress((tmp_path / "cpu.pxz").read_bytes(), device="cuda")
    assert decoded.pixel_bytes() == image.pixel_bytes()


@pytest.mark.parametrize("coder", codec.CODERS)
def test_coder_fanned_out_to_processes_writes_the_same_bytes(rng, coder):
    """On a GPU the range coder (format v2), and the rANS lanes with PIXZIP_DEVICE_LANES=0, run in
    worker processes, tile by tile or in groups of tiles; here driven with the CPU model, with batches
    small enough to split every way."""
    net = tiny(dict(channels=3, stream_bits=16, slope=2))
    planes = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(20, 30), (9, 17), (33, 5)]]
    serial = codec.encode_planes(net, planes, 8, coder=coder)
    fanned = codec._encode_on_device(net, planes, 8, None, 300, 3, coder)
    for (s1, b1), (s2, b2) in zip(serial, fanned):
        assert len(s1) == len(s2) and all(np.array_equal(a, b) for a, b in zip(s1, s2)) and b1 == b2


def test_auto_device_prefers_the_native_coder_and_decodes_on_the_cpu(monkeypatch):
    from test_architectures import tiny_rnn
    from pixzip.cli import set_device
    assert set_device("auto", 0) == "auto" and set_device("auto", 0, decoding=True) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert set_device("cuda", 0, decoding=True) == "cuda" and set_device("cpu", 0) == "cpu"
    # "auto" keeps a model the GPU path does not run (an LSTM) on the CPU, whatever torch sees
    _, lstm = tiny_rnn("rowlstm")
    assert codec.placed(lstm, "auto", 7) == (lstm, 7)
    # ... and a model the native CPU coder runs (faster than the GPU path measured so far)
    from pixzip.backends import native
    net = tiny(dict(channels=3, stream_bits=16, slope=2))
    if native.kernel() != "none":
        assert native.supports(net) and codec.coding_device(net, "auto") is None
        assert codec.placed(net, "auto", 7) == (net, 7)
    other = tiny(dict(channels=3, stream_bits=8))              # the torch path only: a GPU when there is one
    assert not native.supports(other) and codec.coding_device(other, "auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert codec.placed(net, "auto", 7) == (net, 7) and codec.coding_device(other, "auto") is None


@cuda
@pytest.mark.parametrize("switch", ["PIXZIP_CUDA_GRAPHS", "PIXZIP_DEVICE_LANES"])
def test_gpu_decoding_paths_give_the_same_pixels(switch, rng, monkeypatch):
    """By default a GPU decodes with CUDA graphs (padded wavefronts, replayed kernels) and the rANS
    lanes there, inside the graphs; the graphs really are captured, and turning either off (eager
    steps; the lanes on the host) gives the same pixels. Corrupt streams are refused there too."""
    net = tiny(dict(channels=3, stream_bits=16, slope=2))
    planes = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 37), (16, 16), (9, 30), (1, 1)]]
    streams = [s for s, _ in codec.encode_planes(net, planes, 16)]
    shapes = [p.shape[:2] for p in planes]
    assert codec._lanes_on_device(net.on("cuda"))
    before = codec.GRAPH_STATS["captured"]
    default = codec.decode_planes(net, shapes, 16, streams, device="cuda")
    assert codec.GRAPH_STATS["captured"] > before, codec.GRAPH_STATS["error"]
    bad = [[s.copy() for s in plane_streams] for plane_streams in streams]
    bad[0][0] = bad[0][0][:-1]
    with pytest.raises(ValueError):
        codec.decode_planes(net, shapes, 16, bad, device="cuda")
    monkeypatch.setenv(switch, "0")
    other = codec.decode_planes(net, shapes, 16, streams, device="cuda")
    for a, b, p in zip(default, other, planes):
        assert np.array_equal(a, p) and np.array_equal(b, p)


@cuda
def test_lockstep_on_the_gpu_writes_the_cpu_bytes(rng, monkeypatch):
    """On a GPU the encoder's lanes run there (a lockstep replayed as CUDA graphs): the CPU's bytes,
    and those of the lanes on the host (PIXZIP_DEVICE_LANES=0)."""
    net = tiny(dict(channels=3, stream_bits=16, slope=2))
    planes = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(70, 90), (16, 16), (9, 30), (1, 1)]]
    cpu = codec.encode_planes(net, planes, 32)
    before = codec.GRAPH_STATS["captured"]
    gpu = codec.encode_planes(net, planes, 32, device="cuda")
    assert codec.GRAPH_STATS["captured"] > before, codec.GRAPH_STATS["error"]
    monkeypatch.setenv("PIXZIP_DEVICE_LANES", "0")
    host = codec.encode_planes(net, planes, 32, device="cuda")
    for (s1, b1), (s2, b2), (s3, b3) in zip(cpu, gpu, host):
        assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(s1, s2, s3))
        assert b1 == b2 == b3


