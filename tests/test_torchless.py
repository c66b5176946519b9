"""Coding without torch (issue 21): with a model the native coder runs, `pixzip compress/decompress/
test/info` and `pixzip.encode/decode` import no torch, and they work where torch cannot be imported at
all; a model or option that needs torch then fails in one line naming the fix, with nothing written.

Each check runs in a fresh interpreter (this one has torch imported by the other tests), with the
shipped models (the tiny test models are 8-bit-stream PixelCNNs, which only the torch path runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import NO_TORCH

from pixzip.backends import native

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not native.available(), reason="the native coder is not built here")


ROUND_TRIP = textwrap.dedent("""
    import sys
    import numpy as np
    from PIL import Image
    import pixzip
    from pixzip.cli import main

    def cli(*args):
        try:
            main(list(args))
        except SystemExit as e:
            assert not e.code, (args, e.code)

    cli("compress", "photo.png", "-q")
    cli("info", "photo.png.pxz")
    cli("test", "photo.png.pxz")
    cli("decompress", "photo.png.pxz", "-o", "back.png", "-q")
    original = np.asarray(Image.open("photo.png"))
    assert np.array_equal(np.asarray(Image.open("back.png")), original)
    data = pixzip.encode(original)
    assert np.array_equal(pixzip.decode(data), original)
    with Image.open("photo.png.pxz") as im:           # the Pillow plugin
        assert np.array_equal(np.asarray(im), original)
    print("torch imported:", "torch" in sys.modules)
""")


def photo_like(h: int = 72, w: int = 96) -> np.ndarray:
    """Smooth gradients, an edge and mild noise: what the default model codes well (and more than
    64x64 pixels, so the photo model, not the small-image one)."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 1.5 + y, 200 - y * 1.2, 60 + (x + 2 * y) % 90], axis=-1)
    base[:, w // 2:] += 40
    return np.clip(base + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def run_python(code: str, cwd: Path, block: bool, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**(env or os.environ), "PYTHONPATH": str(ROOT)}
    env.pop("PIXZIP_MODELS", None)                      # the shipped models
    return subprocess.run([sys.executable, "-c", (NO_TORCH if block else "") + code], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture
def work(tmp_path) -> Path:
    Image.fromarray(photo_like()).save(tmp_path / "photo.png")
    return tmp_path


@pytest.mark.parametrize("block", [False, True], ids=["torch-installed", "torch-unimportable"])
def test_coding_with_the_default_model_imports_no_torch(work, block):
    """The CLI (compress at the default effort, info, test, decompress), pixzip.encode/decode and the
    Pillow plugin: exact round trips, and torch never imported (or importable)."""
    r = run_python(ROUND_TRIP, work, block)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[-1] == "torch imported: False"


def _one_line_refusal(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert "needs torch" in lines[0] and "pip install torch==2.13.0" in lines[0] and "pixzip[torch]" in lines[0]
    return lines[0]


CLI = "import sys\nfrom pixzip.cli import main\nmain(sys.argv[1:])\n"


def test_what_needs_torch_says_so_in_one_line_and_writes_nothing(work, tiny_dir):
    """Without torch: a model the native coder does not run (compress with it, decompress a file made
    with it), the coder switched off (PIXZIP_NATIVE=0) and --device cuda each fail in one line naming
    the fix, and leave no output behind."""
    other = tiny_dir / "other-rgb.pxm"          # an 8-bit-stream PixelCNN: the torch path only
    made = run_python(CLI.replace("sys.argv[1:]", repr(["compress", "photo.png", "-o", "torch.pxz", "-q",
                                                        "--format-version", "3", "-m", str(other)])),
                      work, block=False)                 # v3: coded by the model (a v4 file would store it)
    assert made.returncode == 0, made.stderr[-3000:]

    def cli(*args, env=None):
        return run_python(CLI.replace("sys.argv[1:]", repr(list(args))), work, block=True, env=env)

    line = _one_line_refusal(cli("compress", "photo.png", "-o", "a.pxz", "-m", str(other)))
    assert line.startswith("pixzip: photo.png: ")               # errors name the file
    line = _one_line_refusal(cli("decompress", "torch.pxz", "-o", "b.png", "-m", str(other)))
    assert "torch.pxz" in line
    _one_line_refusal(cli("compress", "photo.png", "-o", "c.pxz", env={**os.environ, "PIXZIP_NATIVE": "0"}))
    _one_line_refusal(cli("compress", "photo.png", "-o", "d.pxz", "--device", "cuda"))
    assert not [p.name for p in work.iterdir() if p.name[0] in "abcd"]


def test_commands_that_need_torch_say_so(work):
    """train, eval and sample without torch: one line naming the fix, nothing written."""
    (work / "data").mkdir()
    for args in (["train", "data", "--out", "m.pxm"], ["sample", "pcnn-rgb-v7", "--size", "8x8", "-o", "s.png"],
                 ["eval", "pcnn-rgb-v7", "photo.png"]):
        r = run_python(CLI.replace("sys.argv[1:]", repr(args)), work, block=True)
        _one_line_refusal(r)
    assert not (work / "m.pxm").exists() and not (work / "s.png").exists()
