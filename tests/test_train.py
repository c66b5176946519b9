"""`pixzip train` end to end on a tiny config: trains, checkpoints, resumes, exports, and the exported
model codes images exactly through the same CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixzip.nets import modelfile
from pixzip.cli import main


@pytest.fixture
def data_dir(tmp_path, rng):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    yy, xx = np.mgrid[0:24, 0:30]
    for k in range(3):
        a = np.stack([(xx * (k + 2) + yy) % 256, (yy * 3 + k * 40) % 256, (xx + yy * 2) % 256], -1)
        Image.fromarray((a + rng.integers(0, 6, a.shape)).astype(np.uint8)).save(d / "sub" / f"{k}.png")
    np.save(d / "stack.npy", rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    return d


TINY = ["--steps", "6", "--crop", "12", "--batch", "2", "--hidden", "6", "--blocks", "1", "-q"]


def test_train_export_and_code(tmp_path, data_dir, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["train", str(data_dir), "--out", "m.pxm", *TINY])
    assert r.exit_code == 0, r.stderr
    assert "float" in r.stderr and "integer" in r.stderr
    model = modelfile.load(Path("m.pxm"))
    prov = model.provenance
    assert prov["steps"] == 6 and "float_bpd" in prov and "int_bpd" in prov
    assert prov["int_bpd"] > 0 and prov["float_bpd"] > 0   # (closeness: tests/test_engine.py)
    img = data_dir / "sub" / "1.png"
    assert CliRunner().invoke(main, ["compress", str(img), "-o", "x.pxz", "-m", "m.pxm"]).exit_code == 0
    assert CliRunner().invoke(main, ["decompress", "x.pxz", "-o", "x.png", "-m", "m.pxm"]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(img)), np.asarray(Image.open("x.png")))


def test_v2_options_fine_tune_a_v1_checkpoint(tmp_path, data_dir, monkeypatch):
    """--stream-bits 16 and --slope 2 from a checkpoint of an 8-bit, square-kernel model (as the v2
    models were made): the masks come from the new config, the stream's quantiser starts afresh, and
    the exported model codes an image exactly with the slope it was trained for."""
    monkeypatch.chdir(tmp_path)
    base = ["train", str(data_dir), "--first-kernel", "7", "--skip-kernel", "5", *TINY]
    assert CliRunner().invoke(main, base + ["--out", "v1.pxm"]).exit_code == 0
    r = CliRunner().invoke(main, base + ["--out", "v2.pxm", "--init", "v1.pxm.ckpt", "--stream-bits", "16",
                                         "--slope", "2", "--qat-start", "0"])
    assert r.exit_code == 0, r.stderr
    net = modelfile.load(Path("v2.pxm")).net
    assert net.slope == 2 and net.cfg.stream_bits == 16
    img = data_dir / "sub" / "2.png"
    assert CliRunner().invoke(main, ["compress", str(img), "-o", "y.pxz", "-m", "v2.pxm"]).exit_code == 0
    assert CliRunner().invoke(main, ["decompress", "y.pxz", "-o", "y.png", "-m", "v2.pxm"]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(img)), np.asarray(Image.open("y.png")))


def test_resume_continues_from_checkpoint(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", str(data_dir), "--out", "g.pxm", "--channels", "1", "--optimizer", "rmsprop"]
    r = CliRunner().invoke(main, args + TINY)
    assert r.exit_code == 0, r.stderr
    more = [a if a != "6" else "9" for a in TINY]
    r = CliRunner().invoke(main, args + more + ["--resume"])
    assert r.exit_code == 0, r.stderr
    assert modelfile.load(Path("g.pxm")).provenance["steps"] == 9


def test_train_bad_data_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["train", "nowhere", "--out", "m.pxm", *TINY])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "nowhere" in r.stderr


def test_init_fine_tunes_from_another_checkpoint(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["train", str(data_dir), "--out", "a.pxm", *TINY]).exit_code == 0
    r = CliRunner().invoke(main, ["train", str(data_dir), "--out", "b.pxm", "--init", "a.pxm.ckpt",
                                  "--qat-start", "0", *TINY])
    assert r.exit_code == 0, r.stderr
    assert modelfile.load(Path("b.pxm")).provenance["train_config"]["init"] == "a.pxm.ckpt"
    r = CliRunner().invoke(main, ["train", str(data_dir), "--out", "c.pxm", "--init", "a.pxm.ckpt",
                                  "--hidden", "9", *TINY[:-5], "--blocks", "1", "-q"])
    assert r.exit_code == 1 and "does not fit" in r.stderr


def test_grey_view_of_a_colour_network_predicts_its_r(rng):
    """A colour network whose G and B groups read nothing of the current pixel (the one thing the grey mask
    drops) predicts R of a grey image repeated in R, G and B exactly as its grey view predicts the grey image."""
    import torch
    from pixzip.spec.config import ModelConfig
    from pixzip.training.loop import grey_view, load_weights
    from pixzip.training.registry import build_model
    cfg = ModelConfig(hidden=6, blocks=2, first_kernel=7, skip_kernel=5, stream_bits=16, slope=2)
    colour = build_model(cfg)
    with torch.no_grad():
        for p in colour.parameters():
            p.add_(0.05 * torch.randn_like(p))          # biases and the head too, not only the initial values
        colour.first.weight[:, :, 3, 3] = 0            # the centre tap: only G and B groups have one
    grey = build_model(ModelConfig(channels=1, hidden=6, blocks=2, first_kernel=7, skip_kernel=5,
                                   stream_bits=16, slope=2))
    load_weights(grey, grey_view(colour.state_dict()))
    img = torch.from_numpy(rng.integers(0, 256, (1, 1, 13, 11)))
    x = (img.float() - 128) / 128
    with torch.no_grad():
        r = colour.raw_head(x.repeat(1, 3, 1, 1))[:, 0] + torch.stack([colour.skip(x.repeat(1, 3, 1, 1))[:, 0],
                                                                        torch.zeros(1, 13, 11)], 1)
        g = grey.raw_head(x)[:, 0] + torch.stack([grey.skip(x)[:, 0], torch.zeros(1, 13, 11)], 1)
    assert torch.allclose(r, g, atol=1e-5)


def test_a_colour_checkpoint_starts_a_grey_model(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["train", str(data_dir), "--out", "c.pxm", *TINY]).exit_code == 0
    r = CliRunner().invoke(main, ["train", str(data_dir), "--out", "g.pxm", "--init", "c.pxm.ckpt",
                                  "--channels", "1", "--qat-start", "0", *TINY])
    assert r.exit_code == 0, r.stderr
    assert modelfile.load(Path("g.pxm")).net.cfg.channels == 1


@pytest.mark.parametrize("arch", ["rowlstm", "diagbilstm"])
def test_lstm_trains_exports_and_codes(arch, tmp_path, data_dir, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["train", str(data_dir), "--out", "r.pxm", "--arch", arch, "--layers", "2",
                                  "--first-kernel", "3", "--skips", *TINY[:-5], "-q"])
    assert r.exit_code == 0, r.stderr
    model = modelfile.load(Path("r.pxm"))
    assert model.net.cfg.arch == arch and model.net.cfg.layers == 2 and model.net.cfg.skips
    img = data_dir / "sub" / "2.png"
    assert CliRunner().invoke(main, ["compress", str(img), "-o", "x.pxz", "-m", "r.pxm"]).exit_code == 0
    assert CliRunner().invoke(main, ["decompress", "x.pxz", "-o", "x.png", "-m", "r.pxm"]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(img)), np.asarray(Image.open("x.png")))


def test_bilevel_model_trains_and_codes_mode_1(tmp_path, rng, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digits = (rng.random((20, 14, 14)) < 0.2).astype(np.uint8) * 255
    np.save("bits.npy", digits)
    r = CliRunner().invoke(main, ["train", "bits.npy", "--out", "b.pxm", "--arch", "diagbilstm", "--channels", "1",
                                  "--levels", "2", "--head", "softmax", "--layers", "1", "--first-kernel", "3",
                                  *TINY[:-5], "-q"])
    assert r.exit_code == 0, r.stderr
    Image.fromarray(digits[0] > 0).convert("1").save("d.png")
    assert CliRunner().invoke(main, ["compress", "d.png", "-m", "b.pxm"]).exit_code == 0
    assert CliRunner().invoke(main, ["decompress", "d.png.pxz", "-o", "e.png", "-m", "b.pxm"]).exit_code == 0
    a, b = Image.open("d.png"), Image.open("e.png")
    assert a.mode == b.mode == "1" and np.array_equal(np.asarray(a), np.asarray(b))
    assert Path("d.png.pxz").stat().st_size < 60 + 14 * 14 / 8 * 1.5     # about a bit per pixel at most
    # a bilevel model refuses a grey image with a clear message
    Image.fromarray(digits[1]).save("g.png")
    r = CliRunner().invoke(main, ["compress", "g.png", "-m", "b.pxm"])
    assert r.exit_code == 1 and "bilevel" in r.stderr


def test_multiscale_trains_exports_and_codes(tmp_path, data_dir, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["train", str(data_dir), "--out", "ms.pxm", "--arch", "multiscale",
                                  "--small-arch", "rowlstm", "--layers", "1", "--first-kernel", "3", *TINY[:-5], "-q"])
    assert r.exit_code == 0, r.stderr
    model = modelfile.load(Path("ms.pxm"))
    assert model.net.cfg.arch == "multiscale" and model.net.small.cfg.arch == "rowlstm"
    img = data_dir / "sub" / "0.png"
    assert CliRunner().invoke(main, ["compress", str(img), "-o", "x.pxz", "-m", "ms.pxm"]).exit_code == 0
    assert CliRunner().invoke(main, ["decompress", "x.pxz", "-o", "x.png", "-m", "ms.pxm"]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(img)), np.asarray(Image.open("x.png")))
    r = CliRunner().invoke(main, ["compress", str(img), "-o", "y.pxz", "-m", "ms.pxm", "--tile", "5"])
    assert r.exit_code == 1 and "multiple" in r.stderr


def test_distributed_training_with_torchrun(tmp_path, data_dir):
    """Two processes through PyTorch's own launcher (gloo on CPUs, as NCCL would be on GPUs): rank 0
    validates, checkpoints and exports."""
    import subprocess
    import sys
    import torch
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "pixzip", "train", str(data_dir), "--out", "d.pxm", "--device", "cpu", "-T", "1",
                        *TINY[:-1]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    state = torch.load(tmp_path / "d.pxm.ckpt", weights_only=True)
    assert state["step"] == 6 and state["log"][-1]["processes"] == 2
    assert modelfile.load(tmp_path / "d.pxm").provenance["steps"] == 6


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_train_on_cuda_exports_a_model_that_codes_on_the_cpu(tmp_path, data_dir, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["train", str(data_dir), "--out", "c.pxm", "--device", "cuda", *TINY])
    assert r.exit_code == 0, r.stderr
    img = data_dir / "sub" / "1.png"
    assert CliRunner().invoke(main, ["compress", str(img), "-o", "x.pxz", "-m", "c.pxm"]).exit_code == 0
    assert CliRunner().invoke(main, ["decompress", "x.pxz", "-o", "x.png", "-m", "c.pxm"]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(img)), np.asarray(Image.open("x.png")))


def test_minutes_budget_ends_training_in_time(tmp_path, data_dir, monkeypatch):
    """--minutes re-fits the step count to the wall-clock budget (and --steps stays the most it runs)."""
    import time
    from pixzip.training.loop import load_checkpoint
    monkeypatch.chdir(tmp_path)
    args = ["train", str(data_dir), "--out", "t.pxm", "--steps", "100000", "--minutes", "0.05", "--val-every", "5",
            "--crop", "12", "--batch", "2", "--hidden", "6", "--blocks", "1", "-q", "-T", "1"]
    t0 = time.time()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.stderr
    state = load_checkpoint(tmp_path / "t.pxm.ckpt")
    assert 5 <= state["step"] < 100000 and state["train_config"]["steps"] == state["step"]
    assert state["log"][-1]["time"] < 0.05 * 60 + 2 and time.time() - t0 < 60


def test_fit_steps_follows_the_measured_pace():
    import time
    from pixzip.training.loop import fit_steps
    now = time.time()
    assert fit_steps(100, (now - 10, 0), now + 20, 10 ** 6) in range(295, 306)    # 10 steps/s, 20 s left
    assert fit_steps(100, (now - 10, 0), now - 1, 10 ** 6) == 100                  # past the deadline: stop
    assert fit_steps(100, (now - 10, 0), now + 20, 150) == 150                     # never beyond --steps


def test_export_without_val_measures_the_last_tenth_of_the_data(tmp_path, rng):
    from pixzip.training.config import TrainConfig
    from pixzip.training.loop import validation_arrays
    np.save(tmp_path / "s.npy", rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8))
    assert len(validation_arrays(TrainConfig(data=[str(tmp_path / "s.npy")]), 3)) == 3
