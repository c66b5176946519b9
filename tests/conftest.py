"""Shared fixtures: tiny random integer models (fast on any CPU) installed under the default names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pixzip import modelfile, zoo
from pixzip.export import export
from pixzip.model import ModelConfig, build_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


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
    return d


@pytest.fixture
def tiny_models(tiny_dir, monkeypatch):
    """Make the tiny models the installed defaults (they shadow the shipped ones)."""
    monkeypatch.setenv("PIXZIP_MODELS", str(tiny_dir))
    return tiny_dir


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
