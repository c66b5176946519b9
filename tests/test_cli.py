"""The user's commands end to end: click's CliRunner, and one real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixzip import zoo
from pixzip.backends import native
from pixzip.cli import main


@pytest.fixture
def workdir(tmp_path, tiny_models, monkeypatch, rng):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)).save("a.png")
    Image.fromarray(rng.integers(0, 256, (9, 7), dtype=np.uint8)).save("b.bmp")
    Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save("c.tif")
    Path("bad.png").write_bytes(b"this is not an image")
    return tmp_path


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def pixels(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im).copy()


def same_image(a, b):
    ma, pa = pixels(a)
    mb, pb = pixels(b)
    return ma == mb and np.array_equal(pa, pb)


def test_compress_then_decompress_names_and_keeps_source(workdir):
    r = run("compress", "a.png")
    assert r.exit_code == 0, r.stderr
    assert "bytes" in r.stderr and "bits/sub-pixel" in r.stderr
    assert Path("a.png.pxz").exists() and Path("a.png").exists()
    os.rename("a.png", "orig.png")
    r = run("decompress", "a.png.pxz")
    assert r.exit_code == 0, r.stderr
    assert same_image("a.png", "orig.png")
    assert Path("a.png.pxz").exists()


def test_several_inputs_one_bad(workdir):
    r = run("compress", "a.png", "bad.png", "b.bmp", "c.tif", "missing.png")
    assert r.exit_code == 1
    assert Path("a.png.pxz").exists() and Path("b.bmp.pxz").exists() and Path("c.tif.pxz").exists()
    assert not Path("bad.png.pxz").exists()
    errors = [line for line in r.stderr.splitlines() if line.startswith("pixzip:")]
    assert len(errors) == 2 and "bad.png" in errors[0] and "missing.png" in errors[1]
    assert "Traceback" not in r.stderr
    r = run("decompress", "b.bmp.pxz", "-o", "b2.bmp")
    assert r.exit_code == 0 and same_image("b.bmp", "b2.bmp")


def test_output_option_and_format_by_suffix(workdir):
    assert run("compress", "a.png", "-o", "x.pxz").exit_code == 0
    assert Path("x.pxz").exists()
    for out in ("y.png", "y.tif", "y.bmp", "y.webp", "y.ppm"):
        r = run("decompress", "x.pxz", "-o", out)
        assert r.exit_code == 0, r.stderr
        assert same_image("a.png", out)
    r = run("decompress", "x.pxz", "-o", "y.jpg")
    assert r.exit_code == 1 and "lossy" in r.stderr and not Path("y.jpg").exists()


def test_outputs_that_would_lose_transparency_or_the_icc_profile_are_refused(workdir):
    """A palette image's transparent colour survives only in PNG, an ICC profile in PNG, TIFF and
    WebP: other outputs are refused in one line, and nothing is written."""
    im = Image.fromarray(np.arange(20, dtype=np.uint8).reshape(4, 5) % 4, "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.save("p.png", transparency=1)
    Image.open("a.png").save("icc.png", icc_profile=b"\0" * 128)
    for src in ("p.png", "icc.png"):
        assert run("compress", src).exit_code == 0
    for src, out in (("p.png", "p.bmp"), ("p.png", "p.tif"), ("icc.png", "i.bmp"), ("icc.png", "i.ppm")):
        r = run("decompress", src + ".pxz", "-o", out)
        assert r.exit_code == 1 and "use .png" in r.stderr and not Path(out).exists(), (out, r.stderr)
    assert run("decompress", "icc.png.pxz", "-o", "i.tif").exit_code == 0
    assert Image.open("i.tif").info["icc_profile"] == b"\0" * 128 and same_image("icc.png", "i.tif")
    assert run("decompress", "p.png.pxz", "-o", "p2.png").exit_code == 0
    assert Image.open("p2.png").info["transparency"] == 1


def test_decompress_without_image_suffix_appends_png(workdir):
    run("compress", "a.png", "-o", "pic.pxz")
    assert run("decompress", "pic.pxz").exit_code == 0
    assert same_image("a.png", "pic.png")


def test_multiple_inputs_with_output_is_a_usage_error(workdir):
    r = run("compress", "a.png", "c.tif", "-o", "x.pxz")
    assert r.exit_code == 2 and not Path("x.pxz").exists()


def test_stdout_and_stdin(workdir):
    r = run("compress", "a.png", "-c")
    assert r.exit_code == 0
    data = r.stdout_bytes
    assert data[:4] == b"\x89PXZ" and not Path("a.png.pxz").exists()
    r = run("decompress", "-", "-c", input=data)
    assert r.exit_code == 0
    Path("out.png").write_bytes(r.stdout_bytes)
    assert same_image("a.png", "out.png")
    r = run("compress", "-", input=Path("a.png").read_bytes())
    assert r.exit_code == 0 and r.stdout_bytes == data
    r = run("compress", "-", "-o", "s.pxz", input=Path("a.png").read_bytes())
    assert r.exit_code == 0 and Path("s.pxz").read_bytes() == data
    r = run("decompress", "s.pxz", "-o", "-")
    assert r.exit_code == 0 and r.stdout_bytes[:4] == b"\x89PNG"


def test_refuses_to_overwrite_without_force(workdir):
    Path("a.png.pxz").write_bytes(b"precious")
    r = run("compress", "a.png")
    assert r.exit_code == 1 and "already exists" in r.stderr
    assert Path("a.png.pxz").read_bytes() == b"precious"
    r = run("compress", "a.png", "-f")
    assert r.exit_code == 0 and Path("a.png.pxz").read_bytes()[:4] == b"\x89PXZ"
    r = run("decompress", "a.png.pxz")
    assert r.exit_code == 1 and "already exists" in r.stderr
    r = run("decompress", "a.png.pxz", "-f")
    assert r.exit_code == 0


def test_format_version_2_for_older_readers(workdir):
    """--format-version 2 and 3 write what older pixzip reads; every version decodes to the same
    pixels, and the default is version 4."""
    assert run("compress", "a.png", "-o", "v4.pxz").exit_code == 0
    assert run("compress", "a.png", "-o", "v3.pxz", "--format-version", "3").exit_code == 0
    assert run("compress", "a.png", "-o", "v2.pxz", "--format-version", "2").exit_code == 0
    assert [Path(f"v{v}.pxz").read_bytes()[8] for v in (2, 3, 4)] == [2, 3, 4]
    for name in ("v2", "v3", "v4"):
        assert run("decompress", f"{name}.pxz", "-o", f"{name}.png").exit_code == 0
    assert Image.open("v2.png").tobytes() == Image.open("v3.png").tobytes() == Image.open("v4.png").tobytes() \
        == Image.open("a.png").tobytes()
    r = run("compress", "a.png", "-o", "v9.pxz", "--format-version", "9")
    assert r.exit_code == 2 and not Path("v9.pxz").exists()


def test_test_and_info(workdir):
    run("compress", "a.png")
    r = run("test", "a.png.pxz")
    assert r.exit_code == 0 and "OK" in r.stderr
    assert not Path("a.png.pxz.png").exists()
    r = run("info", "a.png.pxz")
    assert r.exit_code == 0
    for key in ("format version:  4", "15x12 RGB, 8-bit", "metadata:        none", zoo.SMALL_DEFAULTS[3], "bits/sub-pixel", "model ideal"):
        assert key in r.stdout
    assert "transforms:" not in r.stdout


def test_a_bilevel_page_round_trips_as_mode_1_and_info_shows_its_transforms(workdir):
    page = np.ones((30, 40), bool)
    page[4:9, 3:30:4] = False                                # strokes, and blank rows the repeats step drops
    Image.fromarray(page).save("page.png")
    assert run("compress", "-e", "2", "page.png").exit_code == 0
    r = run("info", "page.png.pxz")
    assert "40x30 1, 1-bit" in r.stdout and "transforms:      grey-from-bilevel" in r.stdout
    assert run("decompress", "page.png.pxz", "-o", "back.png").exit_code == 0
    with Image.open("back.png") as back:
        assert back.mode == "1" and np.array_equal(np.asarray(back), page)


def test_test_reports_damage(workdir):
    run("compress", "a.png")
    data = bytearray(Path("a.png.pxz").read_bytes())
    data[-3] ^= 0x40
    Path("broken.pxz").write_bytes(bytes(data))
    r = run("test", "broken.pxz", "a.png.pxz")
    assert r.exit_code == 1 and "corrupted" in r.stderr and "a.png.pxz: OK" in r.stderr


def test_quiet_and_verbose(workdir):
    r = run("compress", "a.png", "-q")
    assert r.exit_code == 0 and r.stderr == ""
    r = run("compress", "c.tif", "-v")
    assert "model ideal" in r.stderr


def test_help_teaches():
    r = run("--help")
    assert r.exit_code == 0 and "compress" in r.stdout and "decompress" in r.stdout
    r = run("compress", "--help")
    assert "Examples" in r.stdout and "--force" in r.stdout and "--model" in r.stdout


def test_real_subprocess_round_trip(workdir):
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "pixzip", "compress", "a.png", "-o", "sub.pxz"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "-m", "pixzip", "decompress", "sub.pxz", "-o", "sub.png"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert same_image("a.png", "sub.png")
    p = subprocess.run([sys.executable, "-m", "pixzip", "decompress", "a.png"], capture_output=True, text=True)
    assert p.returncode == 1 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_parallel_decode_in_a_real_process_prints_nothing_else(workdir, rng):
    """Worker processes end silently (each once wrote 'pixzip: interrupted' when the pool closed: the
    fork server re-imports the console script, and with it the CLI's start-up signal handler)."""
    script = shutil.which("pixzip")
    if script is None:
        pytest.skip("the pixzip console script is not installed")
    Image.fromarray(rng.integers(0, 256, (380, 360, 3), dtype=np.uint8)).save("big.png")   # > 2^17 pixels
    for args in (["compress", "big.png", "-o", "big.pxz", "--tile", "32"],
                 *[["decompress", "big.pxz", "-o", "big2.png", "-T", "2", "-f"]] * 3):   # (a race: try thrice)
        p = subprocess.run([script, *args, "-q"], capture_output=True, text=True)
        assert p.returncode == 0 and p.stderr == "", p.stderr
    assert same_image("big.png", "big2.png")


def test_verify_and_rm(workdir):
    r = run("compress", "a.png", "--verify")
    assert r.exit_code == 0 and Path("a.png").exists()
    r = run("compress", "c.tif", "--rm")
    assert r.exit_code == 0 and not Path("c.tif").exists() and Path("c.tif.pxz").exists()
    r = run("decompress", "c.tif.pxz")
    assert r.exit_code == 0 and Path("c.tif").exists()


def test_interrupted_decompress_leaves_nothing(workdir, rng):
    """SIGTERM in the middle of a (slow, whole-image) decode: no output, no temporary file, exit 130."""
    import signal
    import time
    # big enough that the decode still runs after 3 s on a fast machine (~12 000 sequential steps)
    Image.fromarray(rng.integers(0, 256, (800, 800, 3), dtype=np.uint8)).save("big.png")
    # format 3: noise is coded (format 4 would store it, and decode it at once)
    assert run("compress", "big.png", "--tile", "0", "-o", "big.pxz", "--format-version", "3").exit_code == 0
    os.unlink("big.png")
    before = set(os.listdir("."))
    p = subprocess.Popen([sys.executable, "-m", "pixzip", "decompress", "big.pxz"],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert set(os.listdir(".")) == before


def test_concurrent_writers_never_clobber(workdir):
    """Several processes racing to write the same output: one wins, the rest refuse; the file is whole."""
    procs = [subprocess.Popen([sys.executable, "-m", "pixzip", "compress", "a.png", "-o", "race.pxz"],
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1, 1, 1], results
    assert all("already exists" in err for code, err in results if code == 1)
    assert run("test", "race.pxz").exit_code == 0
    assert not [f for f in os.listdir(".") if f.endswith(".tmp")]


def test_eval_reports_bits(workdir, tiny_models):
    r = run("eval", str(tiny_models / "other-rgb.pxm"), ".")
    assert r.exit_code == 1 and "bad.png" in r.stderr          # one unreadable file is named
    os.mkdir("set")
    for f in ("a.png", "c.tif"):
        os.rename(f, os.path.join("set", f))
    r = run("eval", str(tiny_models / "other-rgb.pxm"), "set")
    assert r.exit_code == 0, r.stderr
    assert "integer model" in r.stdout and "bits/dim" in r.stdout and "2 images" in r.stdout


def test_bench_measures_every_codec_on_the_same_images(workdir, tiny_models):
    import json
    os.mkdir("set")
    os.rename("a.png", "set/a.png")
    np.save("set/stack.npy", np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    r = run("bench", "set", "--codecs", "pixzip,png", "--json", "b.json", "-q")
    assert r.exit_code == 0, r.stderr
    rows = {row["codec"]: row for row in json.loads(Path("b.json").read_text())["results"]}
    used = rows["pixzip"]["models"]                      # read back from the files' headers
    assert used and set(used) <= set(zoo.available())
    assert f"| pixzip ({', '.join(used)}) |" in r.stdout and "| png |" in r.stdout
    assert rows["pixzip"]["images"] == rows["png"]["images"] == 3
    assert rows["pixzip"]["exact"] and rows["png"]["exact"]
    assert rows["pixzip"]["subpixels"] == 12 * 15 * 3 + 2 * 8 * 8 * 3
    assert "model_bits_per_subpixel" in rows["pixzip"]
    assert json.loads(Path("b.json").read_text())["meta"]["device"] == "cpu"
    r = run("bench", "set", "--codecs", "nope")
    assert r.exit_code == 1 and "unknown codec" in r.stderr


def test_effort_three_codes_colour_with_the_stronger_model(workdir, tiny_models, monkeypatch):
    """-e 3 (api.EFFORTS: the strongest models, static stage) codes colour planes larger than the small-image limit with the first of
    zoo.EFFORT_MODELS[2][3] this installation codes (an ensemble, with the native coder; grey planes
    keep their default); -m still takes precedence; the file decodes without naming the effort."""
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (70, 80, 3), dtype=np.uint8)).save("big.png")
    assert run("compress", "big.png", "-o", "e1.pxz").exit_code == 0
    # format 3 codes the noise (format 4 stores it: its decoder would need no model)
    r = run("compress", "big.png", "-o", "e2.pxz", "-e", "3", "--format-version", "3")
    assert r.exit_code == 0, r.stderr
    stronger = zoo.EFFORT_MODELS[2][3][0 if native.available() else 1]
    assert stronger in run("info", "e2.pxz").stdout
    assert zoo.DEFAULTS[3] in run("info", "e1.pxz").stdout
    assert run("decompress", "e2.pxz", "-o", "back.png").exit_code == 0 and same_image("back.png", "big.png")
    assert run("compress", "big.png", "-o", "m.pxz", "-e", "3", "-m", "other-rgb").exit_code == 0
    assert "other-rgb" in run("info", "m.pxz").stdout
    Image.fromarray(np.zeros((70, 80), np.uint8)).save("grey.png")
    assert run("compress", "grey.png", "-e", "3").exit_code == 0
    assert zoo.DEFAULTS[1] in run("info", "grey.png.pxz").stdout
    r = run("compress", "big.png", "-o", "x.pxz", "-e", "10")
    assert r.exit_code == 2 and not Path("x.pxz").exists()
    if native.available():      # without the native coder: the next model of the list, and the ensemble's
        monkeypatch.setattr(native, "_LIB", None)      # files are refused in one line
        r = run("compress", "big.png", "-o", "e2b.pxz", "-e", "3")
        assert r.exit_code == 0 and zoo.EFFORT_MODELS[2][3][1] in run("info", "e2b.pxz").stdout
        r = run("decompress", "e2.pxz", "-o", "no.png")
        assert r.exit_code == 1 and "native CPU coder" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not Path("no.png").exists()


def test_files_compressed_together_equal_files_compressed_alone(workdir):
    """Several inputs share one batched pass; each file is byte for byte what it is alone."""
    assert run("compress", "a.png", "b.bmp", "c.tif").exit_code == 0
    together = {f: Path(f + ".pxz").read_bytes() for f in ("a.png", "b.bmp", "c.tif")}
    for f, data in together.items():
        assert run("compress", f, "-c").stdout_bytes == data


def test_several_files_decode_together(workdir):
    assert run("compress", "a.png", "b.bmp", "c.tif", "-q").exit_code == 0
    os.mkdir("orig")
    for f in ("a.png", "b.bmp", "c.tif"):
        os.rename(f, os.path.join("orig", f))
    Path("junk.pxz").write_bytes(b"\x89PXZ\r\n\x1a\nnot really")
    r = run("decompress", "a.png.pxz", "junk.pxz", "b.bmp.pxz", "c.tif.pxz")
    assert r.exit_code == 1
    assert r.stderr.count("pixzip:") == 1 and "junk.pxz" in r.stderr
    for f in ("a.png", "b.bmp", "c.tif"):
        assert same_image(f, os.path.join("orig", f))


def test_sample_and_complete(workdir, tiny_models):
    r = run("sample", "pcnn-rgb-v1", "--size", "6x9", "-o", "s.png", "--seed", "3")
    assert r.exit_code == 0, r.stderr
    assert Image.open("s.png").size == (9, 6)
    assert run("sample", "pcnn-rgb-v1", "--size", "6x9", "-o", "t.png", "--seed", "3").exit_code == 0
    assert same_image("s.png", "t.png")                       # seeded: reproducible
    r = run("sample", "pcnn-rgb-v1", "--complete", "a.png", "--rows", "5", "-o", "c.png")
    assert r.exit_code == 0, r.stderr
    _, orig = pixels("a.png")
    _, done = pixels("c.png")
    assert np.array_equal(done[:5], orig[:5]) and not np.array_equal(done[5:], orig[5:])
    r = run("sample", "pcnn-rgb-v1", "--size", "big", "-o", "x.png")
    assert r.exit_code == 1 and "HxW" in r.stderr
    r = run("sample", zoo.EFFORT_MODELS[2][3][0], "-o", "e.png")     # an ensemble: refused in one line
    assert r.exit_code == 1 and "ensemble" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists("e.png")


@pytest.mark.parametrize("grey", [False, True])
def test_bench_reference_codecs_round_trip_exactly(workdir, grey):
    """Every reference codec (imagecodecs) is lossless here, colour and grey: checked, not assumed."""
    pytest.importorskip("imagecodecs")
    import json
    os.mkdir("set")
    os.rename("a.png", "set/a.png")
    codecs = "png,webp,jxl7,jxl9,jpeg2000,jpegls,qoi"
    r = run("bench", "set", "--codecs", codecs, "--json", "b.json", "-q", *(["--grey"] if grey else []))
    assert r.exit_code == 0, r.stderr
    rows = {row["codec"]: row for row in json.loads(Path("b.json").read_text())["results"]}
    assert sorted(rows) == sorted(codecs.split(",")) and all(row["exact"] for row in rows.values())
    assert all(row["subpixels"] == 12 * 15 * (1 if grey else 3) for row in rows.values())
