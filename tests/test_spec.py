"""The integer spec (pixzip/spec/) is the one reference: the tables every shipped model stores are its
formulas' integers, and the constants the C coder repeats are its values."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_model
from pixzip import zoo
from pixzip.entropy.rans import PRECISION
from pixzip.nets.ensemble import IntEnsemble
from pixzip.spec import fixed_point, tables

PACKAGE = Path(__file__).resolve().parent.parent / "pixzip"


def c_constants() -> dict[str, list[int]]:
    """Every `NAME = value` of a C enum and `#define NAME value` in the package's C sources."""
    found: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.[ch]")):
        text = path.read_text()
        pairs = [p for body in re.findall(r"enum\s*\{([^}]*)\}", text)
                 for p in re.findall(r"(\w+)\s*=\s*(\d+)", body)]
        pairs += re.findall(r"#define\s+(\w+)\s+\(?(\d+)\)?\s*$", text, re.M)
        for name, value in pairs:
            found.setdefault(name, []).append(int(value))
    return found


def test_the_c_coder_repeats_the_spec_constants():
    """Each constant the C coder names is written there with the package's value (and is there)."""
    want = {"ROW": fixed_point.ROW, "PRECISION": PRECISION, "MAX_MEMBERS": IntEnsemble.MAX_MEMBERS}
    found = c_constants()
    assert {name: sorted(set(found.get(name, []))) for name in want} == {n: [v] for n, v in want.items()}


def shipped_networks():
    for name in sorted(zoo.available()):
        net = zoo.load_model(name).net
        yield from (net.members if isinstance(net, IntEnsemble) else [net])


def test_every_shipped_model_stores_the_spec_tables():
    """The exp and Laplace-slope tables in every shipped model file are spec.tables' integers."""
    exp, invb = tables.exp_table(), tables.invb_table()
    nets = list(shipped_networks())
    assert nets
    for net in nets:
        assert np.array_equal(net.tables["exp"].numpy(), exp) and np.array_equal(net.tables["invb"].numpy(), invb)


def test_laplace_rows_follow_the_formula(rng):
    """spec.tables.laplace_rows against the formula written out per entry: EXP[min(len - 1,
    (|16(x - q) - r| * INVB >> 14) - (min(r, 16 - r) * INVB >> 14))], at random rows and offsets."""
    exp, invb = tables.exp_table(), tables.invb_table()
    rows = tables.laplace_rows(exp, invb)
    assert rows.shape == (len(invb) * 16, fixed_point.ROW)
    for _ in range(500):
        idx, r, d = int(rng.integers(len(invb))), int(rng.integers(16)), int(rng.integers(-255, 256))
        excess = (abs(16 * d - r) * int(invb[idx]) >> 14) - (min(r, 16 - r) * int(invb[idx]) >> 14)
        assert rows[idx * 16 + r, d + 255] == exp[min(len(exp) - 1, max(0, excess))]


@pytest.mark.parametrize("mu16, idx", [(0, 0), (4080, 72), (1234, 17)])
def test_laplace_start_points_at_the_table_of_mu(mu16, idx):
    """The 256 entries from laplace_start are the Laplace table of (mu16, idx): the value nearest to mu
    has the largest entry (a wide scale ties its neighbours with it), and the entries fall away from it."""
    exp, invb = tables.exp_table(), tables.invb_table()
    flat = tables.laplace_rows(exp, invb).reshape(-1)
    start = tables.laplace_start(mu16, idx)
    table = flat[start:start + 256]
    peak = min(255, (mu16 + 8) // 16)
    assert table[peak] == table.max()
    assert np.all(np.diff(table[peak:]) <= 0) and np.all(np.diff(table[:peak + 1]) >= 0)


@pytest.mark.parametrize("head", ["softmax", "laplace"])
def test_the_engines_frequency_tables_are_the_specs(head, rng):
    """IntModel.frequencies (torch, what the coders read) gives spec.tables' integers: the softmax
    head's exp of the logit excess, the Laplace head's rows at laplace_start."""
    _, net = make_tiny_model(3, head=head)
    exp = net.exp_table.numpy()
    if head == "softmax":
        params = rng.integers(-3000, 3000, (200, 256))
        want = tables.softmax_frequencies(exp, params)
    else:
        params = np.stack([rng.integers(0, 4081, 200), rng.integers(0, len(net.invb_table), 200)], axis=1)
        flat = tables.laplace_rows(exp, net.invb_table.numpy()).reshape(-1)
        start = tables.laplace_start(params[:, 0], params[:, 1])
        want = flat[start[:, None] + np.arange(256)]
    assert np.array_equal(net.frequencies(torch.from_numpy(params)).numpy(), want)
