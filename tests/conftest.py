"""Shared fixtures: tiny random integer models (fast on any CPU) installed under the default names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pixzip import zoo
from pixzip.nets import modelfile
from pixzip.nets.ensemble import IntEnsemble
from pixzip.spec.config import ModelConfig
from pixzip.training.export import export
from pixzip.training.registry import build_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


# A prelude (a sitecustomize.py, or code run before a script) that makes torch unimportable, as on a machine
# without it: any import of torch or of a submodule raises ModuleNotFoundError, whoever asks.
NO_TORCH = """import sys


class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
"""


def to_rgb565(rgb: np.ndarray) -> np.ndarray:
    """8-bit RGB at RGB565's depth: 5, 6 and 5 bits, each widened back to 8 as (v << 3) | (v >> 2) (and for G,
    (v << 2) | (v >> 4)), as a display's frame buffer saved to PNG: a levels plane (entropy stage 4's tests)."""
    px = np.asarray(rgb).astype(np.int64)
    out = np.empty_like(px)
    for c, bits in enumerate((5, 6, 5)):
        v = px[..., c] >> (8 - bits)
        out[..., c] = (v << (8 - bits)) | (v >> (2 * bits - 8))
    return out.astype(np.uint8)


def radial_blend(h: int, w: int, cy: int, cx: int) -> np.ndarray:
    """A radial gradient of three colours about (cy, cx): a plane its neighbours predict better than a network trained
    on photographs does (the classical level's test images, and its golden file's)."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - cx, yy - cy) / np.hypot(h, w)
    return np.stack([250 - 200 * r, 120 + 60 * r, 80 + 150 * r], -1).round().clip(0, 255).astype(np.uint8)


def smooth_sixteen_bit(h: int, w: int, seed: int = 5) -> np.ndarray:
    """Sums of 4 x 4 blocks of a noisy 8-bit colour field (12 bits) shifted up by 4, as 16-bit samples: fine values
    that the neighbours predict within their bins, like bench/sixteen_bit.py's photographs (the low part's tests and
    golden file; the split takes the 4 zero bits off and leaves 4 low bits)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:4 * h, 0:4 * w]
    field = np.stack([120 + 60 * np.sin(xx / 29), 90 + 50 * np.cos(yy / 23), 100 + 40 * np.sin((xx + yy) / 37)], -1)
    field = np.clip(field + rng.normal(0, 0.5, field.shape), 0, 255).round().astype(np.int64)
    return (field.reshape(h, 4, w, 4, 3).sum(axis=(1, 3)) << 4).astype(np.uint16)


def text_beside_photo(seed: int = 7, h: int = 96, w: int = 192) -> np.ndarray:
    """A screenshot's text beside a photograph: the left half lines of five 7 x 5 'letters' (random masks of one
    ink) on a flat ground, the right half a smooth colour field with a little noise. In tiles of 48 the stage
    takes the photograph's tiles, one LZ stream the text's (entropy/lz.py, LZ tiles); measured with pcnn-rgb-v8
    at level 9: 14 852 bytes of streams, the whole plane by LZ 16 564."""
    rng = np.random.default_rng(seed)
    masks = rng.random((5, 7, 5)) < 0.3
    img = np.full((h, w, 3), 240, np.uint8)
    for row in range(h // 12):
        for col in range(w // 16):
            if rng.random() < 0.8:
                img[12 * row + 3:12 * row + 10, 8 * col + 1:8 * col + 6][masks[rng.integers(0, 5)]] = (30, 30, 60)
    img[0, :w // 2] = np.arange(w // 2)[:, None] * 5 % 256      # a ruler: no column repeats (no `repeats` step)
    yy, xx = np.mgrid[0:h, 0:w - w // 2]
    photo = np.stack([xx * 2 + yy, 128 + 50 * np.sin(xx / 7.0) * np.cos(yy / 11.0), 220 - yy * 2], -1)
    img[:, w // 2:] = np.clip(photo + rng.normal(0, 3, photo.shape), 0, 255).astype(np.uint8)
    return img


def make_tiny_model(channels: int, head: str = "laplace", seed: int = 0, hidden: int = 6, blocks: int = 1,
                    first_kernel: int = 5, skip_kernel: int = 0, channel_deps: str = "masks", **extra):
    """A random float model, calibrated on random crops, exported to integers. `extra` goes to
    ModelConfig (e.g. arch="rowlstm", layers=2)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(channels=channels, hidden=hidden, head_hidden=hidden, blocks=blocks, head=head,
                      first_kernel=first_kernel, skip_kernel=skip_kernel, channel_deps=channel_deps, **extra)
    model = build_model(cfg)
    model.set_quantize(True)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.bits(torch.randint(0, 256, (2, channels, 12, 12)))
    model.eval()
    return model, export(model)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    for channels in (3, 1):
        _, net = make_tiny_model(channels, seed=channels)
        modelfile.save(net, d / f"{zoo.DEFAULTS[channels]}.pxm", {"note": "tiny test model"})
    _, net = make_tiny_model(3, seed=99)
    modelfile.save(net, d / "other-rgb.pxm")
    _, net = make_tiny_model(3, seed=7)
    modelfile.save(net, d / f"{zoo.SMALL_DEFAULTS[3]}.pxm", {"note": "tiny small-image test model"})
    members = [make_tiny_model(3, hidden=12, seed=s, blocks=2, stream_bits=16, slope=2, skip_kernel=5)[1]
               for s in (11, 12)]      # the native coder's structure: an ensemble runs nowhere else
    modelfile.save(IntEnsemble(members), d / f"{zoo.EFFORT_MODELS[2][3][0]}.pxm", {"note": "tiny test ensemble"})
    return d


@pytest.fixture
def tiny_models(tiny_dir, monkeypatch):
    """Make the tiny models the installed defaults (they shadow the shipped ones)."""
    monkeypatch.setenv("PIXZIP_MODELS", str(tiny_dir))
    return tiny_dir


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def float_and_integer_bits(cfg: ModelConfig, size: int, steps: int, qat_from: int) -> tuple[float, float, int]:
    """Train a model briefly on one smooth synthetic image (float first, then quantisation-aware, as in
    real training) and return (float model bits, exported integer model bits, sub-pixels) on it."""
    torch.manual_seed(0)
    # One thread: float reductions split across threads round differently, and 150 steps of Adam
    # amplify that into a different trained model (seen: the integer/float ratio moved from 0.992 to
    # 1.0103 with the machine's thread count). One thread gives one trajectory per CPU kind.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_and_compare(cfg, size, steps, qat_from)
    finally:
        torch.set_num_threads(threads)


def _train_and_compare(cfg: ModelConfig, size: int, steps: int, qat_from: int) -> tuple[float, float, int]:
    from pixzip.backends import codec
    from pixzip.training.export import export
    model = build_model(cfg)
    yy, xx = np.mgrid[0:size, 0:size]
    plane = np.stack([(yy * 3 + xx * 2) % 256, (yy * 2 + 40) % 256, (xx * 3 + 90) % 256], -1).astype(np.uint8)
    plane = np.ascontiguousarray(plane[..., :cfg.channels])
    x = torch.from_numpy(plane.transpose(2, 0, 1)[None].copy())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        model.set_quantize(step >= qat_from)
        loss = model.bits(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        float_bits = float(model.bits(x)) * plane.size
    _, int_bits = codec.encode_plane(export(model), plane, 0)
    return float_bits, int_bits, plane.size
