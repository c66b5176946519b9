"""The command-line conventions users of gzip, xz, zstd and cjxl reach for: -d/-t/-l, -k, -r,
-1..-9, -V, --output-dir, --progress, one summary line per file, errors naming the file, -o with an
image's suffix refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import pixzip
from pixzip import efforts, zoo
from pixzip.cli import expand_levels, main


@pytest.fixture
def workdir(tmp_path, tiny_models, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)).save("a.png")
    Image.fromarray(rng.integers(0, 256, (9, 7), dtype=np.uint8)).save("b.bmp")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im).copy()


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("pixzip:")]


def test_zstd_command_letters(workdir):
    assert run("compress", "a.png").exit_code == 0
    r = run("-d", "a.png.pxz", "-o", "back.png")
    assert r.exit_code == 0 and np.array_equal(pixels("back.png"), pixels("a.png"))
    r = run("-t", "a.png.pxz")
    assert r.exit_code == 0 and "a.png.pxz: OK" in r.stderr
    r = run("-l", "a.png.pxz")
    assert r.exit_code == 0 and "format version:" in r.stdout


def test_version_short_and_long():
    for flag in ("-V", "--version"):
        r = run(flag)
        assert r.exit_code == 0 and r.stdout.strip() == f"pixzip, version {pixzip.__version__}"


def test_level_aliases_are_the_effort_option(workdir):
    assert expand_levels(["-3", "a.png", "--", "-4"]) == ["-e", "3", "a.png", "--", "-4"]
    assert run("compress", "a.png", "-o", "e.pxz", "-e", "1").exit_code == 0
    assert run("compress", "-1", "a.png", "-o", "one.pxz").exit_code == 0
    assert run("-1", "a.png", "-o", "top.pxz").exit_code == 0          # pixzip -1 FILE: compress
    assert Path("one.pxz").read_bytes() == Path("e.pxz").read_bytes() == Path("top.pxz").read_bytes()


def test_a_level_beyond_the_defined_ones_is_a_usage_error(workdir):
    r = run("compress", "-e", str(max(efforts.EFFORTS) + 1), "a.png")
    assert r.exit_code == 2 and "effort" in r.stderr and not Path("a.png.pxz").exists()


def test_keep_is_accepted_and_contradicts_rm(workdir):
    r = run("compress", "-k", "a.png")
    assert r.exit_code == 0 and Path("a.png").exists() and Path("a.png.pxz").exists()
    r = run("compress", "-k", "--rm", "b.bmp")
    assert r.exit_code == 2 and Path("b.bmp").exists() and not Path("b.bmp.pxz").exists()


def test_one_summary_line_per_file_and_quiet(workdir):
    size = Path("a.png").stat().st_size
    r = run("compress", "a.png", "b.bmp")
    lines = r.stderr.splitlines()
    assert r.exit_code == 0 and len(lines) == 2
    packed = Path("a.png.pxz").stat().st_size
    assert lines[0].startswith(f"a.png: {size} -> {packed} bytes ({100 * packed / size:.2f}%), ")
    assert lines[0].endswith("bits/sub-pixel -> a.png.pxz")
    r = run("decompress", "a.png.pxz", "-o", "x.png")
    assert r.exit_code == 0
    restored = Path("x.png").stat().st_size           # the ratio is always the .pxz's size over the image's
    assert r.stderr.strip() == (f"a.png.pxz: {packed} -> {restored} bytes ({100 * packed / restored:.2f}%), "
                                "15x12 RGB -> x.png")
    r = run("decompress", "b.bmp.pxz", "-o", "y.bmp", "-q")
    assert r.exit_code == 0 and r.stderr == "" and Path("y.bmp").exists()


def test_verify_and_rm_say_so(workdir):
    r = run("compress", "a.png", "--verify")
    assert r.exit_code == 0 and r.stderr.strip().endswith("-> a.png.pxz, verified")
    r = run("compress", "b.bmp", "--rm")
    assert r.exit_code == 0 and r.stderr.strip().endswith("-> b.bmp.pxz, verified, source removed")
    assert not Path("b.bmp").exists()
    r = run("decompress", "b.bmp.pxz", "--rm")
    assert r.exit_code == 0 and r.stderr.strip().endswith("-> b.bmp, source removed")
    assert Path("b.bmp").exists() and not Path("b.bmp.pxz").exists()


def test_recursive_folders_and_output_dir_mirror_the_tree(workdir, rng):
    Path("photos/sub").mkdir(parents=True)
    Path("photos/notes.txt").write_text("not an image")
    Path("a.png").rename("photos/a.png")
    Path("b.bmp").rename("photos/sub/b.bmp")
    r = run("compress", "-r", "photos", "--output-dir", "packed")
    assert r.exit_code == 0, r.stderr
    found = sorted(p.relative_to("packed").as_posix() for p in Path("packed").rglob("*") if p.is_file())
    assert found == ["photos/a.png.pxz", "photos/sub/b.bmp.pxz"]
    assert sorted(p.name for p in Path("photos").rglob("*.pxz")) == []           # nothing beside the sources
    r = run("test", "-r", "packed")
    assert r.exit_code == 0 and r.stderr.count(": OK") == 2
    r = run("info", "-r", "packed")
    assert r.exit_code == 0 and r.stdout.count("file:") == 2
    r = run("decompress", "-r", "packed", "--output-dir", "back")
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(pixels("back/packed/photos/sub/b.bmp"), pixels("photos/sub/b.bmp"))
    assert np.array_equal(pixels("back/packed/photos/a.png"), pixels("photos/a.png"))


def test_a_folder_without_r_is_named_and_the_rest_continue(workdir):
    Path("folder").mkdir()
    r = run("compress", "folder", "a.png")
    assert r.exit_code == 1 and errors(r) == ["pixzip: folder: is a directory"] and Path("a.png.pxz").exists()


def test_output_dir_is_not_for_single_outputs(workdir):
    r = run("compress", "a.png", "-o", "x.pxz", "--output-dir", "d")
    assert r.exit_code == 2 and not Path("d").exists() and not Path("x.pxz").exists()


def test_a_folder_of_several_files_takes_no_single_output(workdir):
    Path("photos").mkdir()
    Path("a.png").rename("photos/a.png")
    Path("b.bmp").rename("photos/b.bmp")
    r = run("compress", "-r", "photos", "-o", "x.pxz")
    assert r.exit_code == 2 and "-o/--output takes a single input" in r.stderr and not Path("x.pxz").exists()


@pytest.mark.parametrize("name", ["x.png", "x.JPG", "x.tif"])
def test_compress_to_an_image_name_is_refused(workdir, name):
    r = run("compress", "a.png", "-o", name)
    assert r.exit_code == 1 and len(errors(r)) == 1 and name in errors(r)[0] and ".pxz" in errors(r)[0]
    assert not Path(name).exists()


def test_errors_name_the_file(workdir):
    Path("junk.pxz").write_bytes(b"definitely not pixzip")
    assert run("compress", "a.png").exit_code == 0
    r = run("info", "junk.pxz", "a.png.pxz")
    assert r.exit_code == 1 and errors(r) == ["pixzip: junk.pxz: not a pixzip file (bad magic)"]
    assert "a.png.pxz" in r.stdout
    r = run("test", "junk.pxz")
    assert r.exit_code == 1 and errors(r)[0].startswith("pixzip: junk.pxz: ")


def test_a_batch_that_fails_is_coded_file_by_file(workdir, tiny_models):
    """An RGB model given for a grey and a colour image: the grey one is named, the colour one written."""
    r = run("compress", "a.png", "b.bmp", "-m", str(tiny_models / "other-rgb.pxm"))
    assert r.exit_code == 1 and len(errors(r)) == 1 and errors(r)[0].startswith("pixzip: b.bmp: ")
    assert Path("a.png.pxz").exists() and not Path("b.bmp.pxz").exists()


def test_progress_forces_bars_and_quiet_hides_them(workdir):
    r = run("compress", "a.png", "b.bmp", "--progress")
    assert r.exit_code == 0 and "files" in r.stderr and "compress" in r.stderr
    r = run("decompress", "a.png.pxz", "b.bmp.pxz", "--output-dir", "out", "--progress", "-q")
    assert r.exit_code == 0 and r.stderr == ""


def test_real_process_letters_and_levels(workdir):
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-m", "pixzip", "-1", "a.png", "b.bmp"], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 0 and p.stderr.count(" bytes (") == 2, p.stderr
    p = subprocess.run([sys.executable, "-m", "pixzip", "-d", "a.png.pxz", "-o", "back.png"], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0 and np.array_equal(pixels("back.png"), pixels("a.png"))
    p = subprocess.run([sys.executable, "-m", "pixzip", "-V"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and pixzip.__version__ in p.stdout


@pytest.mark.parametrize("blocked, codecs, needle", [("imagecodecs", "png,jxl7", "imagecodecs"),
                                                     ("matplotlib", "png", "matplotlib")])
def test_bench_missing_extras_fail_before_any_coding(workdir, monkeypatch, blocked, codecs, needle):
    """No image is read (DATA does not even exist) before the missing extra is named, in one line."""
    monkeypatch.setitem(sys.modules, blocked, None)          # import fails, find_spec finds nothing
    r = run("bench", "no-such-folder", "--codecs", codecs, "--plot", "plot.png", "-q")
    assert r.exit_code == 1 and len(errors(r)) == 1 and needle in errors(r)[0] and "bench" in errors(r)[0]
    assert not Path("plot.png").exists()


def test_the_clis_default_tile_is_the_apis():
    from pixzip import api, cli, plane_options
    from pixzip.cli import common
    assert cli.DEFAULT_TILE == api.DEFAULT_TILE and common.TEXT_TILE == plane_options.TEXT_TILE


def test_installed_names_are_read_from_model_headers(tiny_models):
    for name, path in zoo.available().items():
        assert zoo.installed_name(zoo.load_model(str(path)).id[:16]) == name
    assert zoo.installed_name("0123456789abcdef") == ""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["compress", "--help"], ["info", "a.png.pxz"]])
def test_help_version_and_info_do_not_import_torch(workdir, args):
    assert run("compress", "a.png").exit_code == 0
    code = ("import sys\nfrom pixzip.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('torch' in sys.modules, 'pixzip.api' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "False False"


def test_an_interrupt_outside_a_files_work_exits_130(workdir, monkeypatch):
    """SIGTERM/Ctrl-C while a command starts (importing the coder, walking folders): one line, 130."""
    from pixzip.cli import coding

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(coding, "expand_inputs", interrupted)
    r = run("decompress", "a.png.pxz")
    assert r.exit_code == 130 and r.stderr == "pixzip: interrupted\n"
