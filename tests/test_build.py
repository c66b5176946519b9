"""The compiled coder is optional (pyproject: an install without a C compiler still works), so a build that
fails, or a library that does not load, would only make the native tests skip: CI would stay green with
two hundred of them skipped. Where the sources and a compiler are both here, it must be built and load."""

import ctypes
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import pixzip
from pixzip.backends import native

SOURCES = Path(pixzip.__file__).parent / "csrc"


def _compiler() -> str | None:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    return shutil.which(cc[0]) if cc else None


needs_native = pytest.mark.skipif(os.environ.get("PIXZIP_NATIVE", "1") == "0", reason="PIXZIP_NATIVE=0")


@needs_native
def test_a_source_checkout_with_a_compiler_has_the_coder_built():
    if not SOURCES.is_dir() or _compiler() is None:
        pytest.skip("no C sources or no C compiler here: the torch engine codes")
    spec = importlib.util.find_spec("pixzip._pxnative")
    assert spec is not None and spec.origin, ("the C coder is not built though its sources and a compiler are "
                                              "here: `pip install -e .` (or build_ext --inplace) shows why")


@needs_native
def test_a_built_coder_loads_with_every_part():
    spec = importlib.util.find_spec("pixzip._pxnative")
    if spec is None or not spec.origin:
        pytest.skip("no compiled coder here")
    ctypes.CDLL(spec.origin)          # an undefined symbol fails here, with the loader's message
    assert native.available() and native.adaptive_available()
    assert native.kernel() in ("avx512-vnni", "plain")


@needs_native
def test_a_broken_library_is_reported_in_one_line(tmp_path):
    """A file that is not a library stands in for a broken build: the tool says so once and codes on."""
    broken = tmp_path / "_pxnative.so"
    broken.write_bytes(b"not a library")
    code = ("import importlib.util, types\n"
            "from pixzip.formats import clib\n"
            f"spec = types.SimpleNamespace(origin={str(broken)!r})\n"
            "importlib.util.find_spec = lambda name: spec\n"
            "assert clib.library() is None\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixzip: the compiled coder does not load")


def test_a_library_of_other_sources_does_not_run_the_adaptive_stage(capsys):
    """A build whose level structure is laid out otherwise (older sources: the structure grew since) would read a
    level's fields at the wrong places: its adaptive stage is not used, and one line says so."""
    class Library:
        def __init__(self, level_size):
            self.pz_adaptive_new = object()
            if level_size is not None:
                self.pz_level_size = lambda: level_size

    for size in (None, ctypes.sizeof(native._Level) - 4):
        lib = Library(size)
        native._declare_adaptive(lib)
        assert not lib.has_adaptive
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("pixzip: the compiled coder is older than this pixzip")
