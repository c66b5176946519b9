"""The package as users get it: the wheel's contents, and the CLI of an installed wheel run outside the
source tree (a temporary venv seeing this interpreter's packages, so no package index is needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import NO_TORCH

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _clean_env() -> dict:
    """The environment of a user: no worktree on the path, no extra model folders."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIXZIP_MODELS")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel offline with the installed setuptools (as `pip wheel` would in CI)."""
    try:
        import setuptools
    except ImportError:
        pytest.skip("setuptools is not installed: the wheel cannot be built offline")
    if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (74, 1):
        pytest.skip(f"setuptools {setuptools.__version__} < 74.1 cannot read ext-modules from pyproject.toml")
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, env=_clean_env())
    assert r.returncode == 0, r.stderr[-3000:]
    (built,) = out.glob("pixzip-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_wheel_holds_every_shipped_model(wheel_names):
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pixzip" / "models").glob("*.pxm"))
    assert shipped, "no shipped models found in pixzip/models"
    assert [n for n in shipped if n not in wheel_names] == []


def test_wheel_holds_the_compiled_coder(wheel_names):
    """Every extension pyproject.toml declares is in the wheel compiled (a .so / .pyd named after it)."""
    for ext in PYPROJECT["tool"]["setuptools"]["ext-modules"]:
        stem = ext["name"].replace(".", "/")
        compiled = [n for n in wheel_names if n.startswith(stem + ".") and n.endswith((".so", ".pyd"))]
        assert compiled, f"{ext['name']} is not compiled into the wheel"


def test_wheel_holds_every_module(wheel_names):
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pixzip").rglob("*.py")
                     if "__pycache__" not in p.parts)
    assert [m for m in modules if m not in wheel_names] == []


def test_wheel_holds_no_checkpoints_tests_or_data(wheel_names):
    priors = [n for n in wheel_names if n.startswith("pixzip/entropy/priors/")]   # part of the format
    unwanted = [n for n in wheel_names if n not in priors
                and (n.endswith((".ckpt", ".pt", ".npy", ".npz")) or n.startswith(("tests/", "models/", "bench/"))
                     or "/checkpoints/" in n)]
    assert unwanted == []
    from pixzip.entropy import adaptive_priors
    assert sorted(p.rsplit("/", 1)[1] for p in priors) == sorted(adaptive_priors.PRIOR_SHA256)


def readme_commands() -> list[str]:
    """README's Quick start commands, as .ci/run reads them."""
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_commands.py"), str(ROOT / "README.md")],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def test_readme_has_the_two_commands_ci_runs():
    install, tests = readme_commands()
    assert install.split(" && ")[:2] == ["pip install torch==2.13.0", "pip install ."]      # not editable
    assert tests.split(" && ") == ["pip install torch==2.13.0", 'pip install -e ".[test]"', "python3 -m pytest -q"]
    printed = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert printed == [install, tests]


def test_installed_wheel_runs_readmes_first_command_outside_the_source_tree(wheel, tmp_path):
    """The wheel installed in a fresh venv (for README's `pip install .`, which needs a package index),
    then README's pixzip commands exactly as written, in a folder that is not the source tree, with the
    shipped default model: the sample comes back pixel for pixel, and info names the model."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**_clean_env(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    # pip of this interpreter (seen through --system-site-packages) installs into the venv
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, env=env)
    work = tmp_path / "clone"
    (work / "docs").mkdir(parents=True)
    (work / "docs" / "sample.png").write_bytes((ROOT / "docs" / "sample.png").read_bytes())
    where = subprocess.run([str(python), "-c", "import pixzip; print(pixzip.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where          # the installed copy, not the source tree
    steps = [c for c in readme_commands()[0].split(" && ") if not c.startswith("pip ")]
    assert steps and all(c.startswith("pixzip ") for c in steps)
    for step in steps:
        r = subprocess.run(["bash", "-c", step], cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{step}: {r.stderr}"
    with Image.open(work / "sample.png") as back, Image.open(ROOT / "docs" / "sample.png") as original:
        assert np.array_equal(np.asarray(back), np.asarray(original))
    assert "pcnn-rgb" in r.stdout and "not installed" not in r.stdout          # the last step: pixzip info


def test_installed_wheel_codes_a_photo_without_torch(wheel, tmp_path):
    """The core install: the wheel in a fresh venv (--no-deps; its core dependencies seen from this
    interpreter's site), torch made unimportable for every process (a sitecustomize on the path), the
    installed `pixzip` compresses and decompresses a photo with the default model, exactly."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(NO_TORCH)
    env = {**_clean_env(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, env=env)
    env["PYTHONPATH"] = str(block)
    probe = subprocess.run([str(python), "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr       # the block holds
    work = tmp_path / "work"
    work.mkdir()
    with Image.open(ROOT / "docs" / "sample.png") as im:
        im.convert("RGB").save(work / "photo.png")
    for step in ("pixzip compress photo.png -o photo.pxz", "pixzip decompress photo.pxz -o back.png",
                 "pixzip test photo.pxz", "pixzip info photo.pxz"):
        r = subprocess.run(["bash", "-c", step], cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{step}: {r.stderr}"
    with Image.open(work / "back.png") as back, Image.open(work / "photo.png") as original:
        assert np.array_equal(np.asarray(back), np.asarray(original))
    assert "pcnn-rgb" in r.stdout
