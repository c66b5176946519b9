"""Recipes (pixzip/training/recipe.py): one per default model, each describing the network it ships, and
a tiny recipe that really trains: stages chained by their checkpoints, a model change taking effect
from its stage on, and the last stage's export coding an image exactly; `pixzip train --recipe` runs
them from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def test_a_recipe_continues_another_with_after(tmp_path):
    """`after` puts the other recipe's stages first, with its own paths; [model] then holds only changes."""
    (tmp_path / "base.toml").write_text(TINY.replace("{data}", "{basedata}") + '[paths]\nbasedata = "B"\n')
    (tmp_path / "more.toml").write_text('name = "more"\nafter = "base.toml"\n[model]\nchannels = 1\n'
                                        '[[stage]]\nname = "third"\ndata = ["{data}/x.npy"]\n')
    r = recipe.load_recipe(tmp_path / "more.toml", {"data": "D"})
    assert [s.name for s in r.stages] == ["first", "second", "third"] and r.name == "more"
    assert [s.train.data for s in r.stages] == [["B/stack.npy"], ["B/stack.npy"], ["D/x.npy"]]
    assert r.stages[1].model.channels == 3
    third = r.stages[2].model
    assert third.channels == 1 and third.stream_bits == 16 and third.slope == 2 and third.hidden == 6
    chained = recipe.chained(r, tmp_path / "runs")
    assert chained[2][0].train.init == str(tmp_path / "runs" / "more.second.pt")


@pytest.mark.parametrize("files, message", [
    ({"a.toml": 'after = "b.toml"\n[[stage]]\n', "b.toml": 'after = "a.toml"\n[[stage]]\n'}, "in a circle"),
    ({"a.toml": 'after = "missing.toml"\n[[stage]]\n'}, "missing.toml"),
    ({"a.toml": 'after = "b.toml"\n', "b.toml": '[[stage]]\n'}, "at least one"),
    ({"a.toml": 'after = "b.toml"\n[[stage]]\nname = "s"\n', "b.toml": '[[stage]]\nname = "s"\n'}, "taken"),
])
def test_a_faulty_after_is_refused_in_one_line(files, message, tmp_path, capsys):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert recipe.main([str(tmp_path / "a.toml"), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# -- `pixzip train --recipe` ------------------------------------------------------------------------------
def train(*args):
    from click.testing import CliRunner

    from pixzip.cli import main
    return CliRunner().invoke(main, ["train", *args])


def test_the_command_line_prints_a_recipes_stages_and_trains_nothing(tmp_path):
    runs = tmp_path / "runs"
    r = train("--recipe", str(RECIPES / "pcnn-rgb-v7.toml"), "--dry-run", "--runs", str(runs),
              "--path", f"prepared={tmp_path / 'prep'}")
    assert r.exit_code == 0, r.output
    expected = recipe.describe(recipe.load_recipe(RECIPES / "pcnn-rgb-v7.toml", {"prepared": str(tmp_path / "prep")}),
                               runs)
    assert r.stdout.strip() == expected
    lines = r.stdout.splitlines()
    assert lines[0] == "pcnn-rgb-v7: 9 stage(s)" and len(lines) == 10
    assert str(tmp_path / "prep" / "photos") in r.stdout and f"{runs}/pcnn-rgb-v7.v7.pxm" in lines[-1]
    assert not runs.exists()


@pytest.mark.parametrize("args, message", [
    ([], "give DATA (image folders, .npy stacks) or --recipe FILE"),
    (["data/", "--recipe", "{recipe}"], "give DATA or --recipe FILE, not both"),
    (["--recipe", "{recipe}", "--steps", "5"], "--steps does not go with --recipe"),
    (["--recipe", "{recipe}", "--out", "m.pxm"], "--out does not go with --recipe"),
    (["--recipe", "{recipe}", "--path", "nothing"], "--path 'nothing': expected NAME=VALUE"),
    (["data/", "--out", "m.pxm", "--dry-run"], "--dry-run goes with --recipe, not with DATA"),
    (["data/"], "Missing option '--out'"),
])
def test_the_command_line_refuses_a_recipe_with_data_or_options_in_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{recipe}", str(RECIPES / "pcnn-gray-v2.toml")) for a in args]
    r = train(*args)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert r.exit_code == 2 and len(errors) == 1 and errors[0].startswith(f"Error: {message}")
    assert not Path("m.pxm").exists() and not Path("runs").exists()


def test_the_command_line_reports_a_faulty_recipe_in_one_line(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[stage]]\nstep = 1\n')
    r = train("--recipe", str(path), "--dry-run")
    assert r.exit_code == 1 and r.stderr.splitlines() == [
        "pixzip: stage stage1: unknown TrainConfig field(s) step"]


def test_the_command_line_trains_a_tiny_recipe(tmp_path, rng):
    """Two tiny images in a folder, one stage of three steps: the model file is written, with the
    recipe's network, and codes an image exactly."""
    data = tmp_path / "images"
    data.mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(data / f"{k}.png")
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\n[model]\nhidden = 6\nhead_hidden = 6\nblocks = 1\nskip_kernel = 3\n'
                    '[[stage]]\nname = "only"\ndata = ["{images}"]\nval = ["{images}"]\nsteps = 3\nbatch = 2\n'
                    'crop = 12\nval_crops = 2\n')
    runs = tmp_path / "runs"
    r = train("--recipe", str(path), "--runs", str(runs), "--path", f"images={data}", "-q")
    assert r.exit_code == 0, r.output
    model = runs / "tiny.only.pxm"
    assert r.stderr.splitlines()[-1] == f"tiny: the recipe's model is {model}"
    loaded = modelfile.load(model)
    assert loaded.net.cfg.to_dict() == recipe.load_recipe(path, {"images": str(data)}).stages[-1].model.to_dict()
    assert loaded.provenance["steps"] == 3 and (runs / "tiny.only.pt").exists()
    plane = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
    (streams, _), = codec.encode_planes(loaded.net, [plane], 8)
    assert np.array_equal(codec.decode_planes(loaded.net, [plane.shape[:2]], 8, [streams])[0], plane)
