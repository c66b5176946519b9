"""Recipes (pixzip/training/recipe.py): one per default model, each describing the network it ships, and
a tiny recipe that really trains: stages chained by their checkpoints, a model change taking effect
from its stage on, and the last stage's export coding an image exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pixzip import zoo
from pixzip.backends import codec
from pixzip.nets import modelfile
from pixzip.training import recipe

RECIPES = Path(__file__).resolve().parent.parent / "models" / "recipes"


def test_every_default_model_has_a_recipe_that_builds_its_network():
    """The recipe's last stage has the shipped model's config, field for field."""
    defaults = {*zoo.DEFAULTS.values(), *zoo.SMALL_DEFAULTS.values()}
    found = {p.stem for p in RECIPES.glob("*.toml")}
    assert defaults <= found
    for name in sorted(found):
        r = recipe.load_recipe(RECIPES / f"{name}.toml")
        assert r.name == name
        shipped = zoo.load_model(name).net
        assert r.stages[-1].model.to_dict() == shipped.cfg.to_dict(), name


TINY = """
name = "tiny"
[model]
hidden = 6
head_hidden = 6
blocks = 1
skip_kernel = 3
[[stage]]
name = "first"
data = ["{data}/stack.npy"]
steps = 4
batch = 2
crop = 12
val_crops = 4
[[stage]]
name = "second"
model = { stream_bits = 16, slope = 2 }
data = ["{data}/stack.npy"]
steps = 3
batch = 2
crop = 12
qat_start = 0.0
val_crops = 4
"""


def test_a_tiny_recipe_chains_its_stages(tmp_path, rng):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "stack.npy", rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    r = recipe.parse_recipe(TINY, {"data": str(data)})
    out = recipe.run_recipe(r, tmp_path / "runs", quiet=True)
    assert out == tmp_path / "runs" / "tiny.second.pxm"
    first, last = modelfile.load(tmp_path / "runs" / "tiny.first.pxm"), modelfile.load(out)
    assert first.net.cfg.stream_bits == 8 and first.provenance["train_config"]["init"] == ""
    assert last.net.cfg.stream_bits == 16 and last.net.slope == 2
    assert last.provenance["train_config"]["init"] == str(tmp_path / "runs" / "tiny.first.pt")
    assert last.provenance["steps"] == 3
    plane = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
    (streams, _), = codec.encode_planes(last.net, [plane], 8)
    assert np.array_equal(codec.decode_planes(last.net, [plane.shape[:2]], 8, [streams])[0], plane)


@pytest.mark.parametrize("text, message", [
    ('[model]\nhiden = 6\n[[stage]]\nsteps = 1\n', "unknown ModelConfig field"),
    ('[[stage]]\nstep = 1\n', "unknown TrainConfig field"),
    ('[[stage]]\ndata = ["{nowhere}/x"]\n', "--path nowhere"),
    ('name = "x"\n', "at least one"),
])
def test_a_faulty_recipe_is_refused_in_one_line(text, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        recipe.parse_recipe(text)
    path = tmp_path / "r.toml"
    path.write_text(text)
    assert recipe.main([str(path), "--dry-run"]) == 1
    assert message in capsys.readouterr().err
