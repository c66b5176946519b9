"""The decoders under AddressSanitizer and UndefinedBehaviorSanitizer: the native coder is rebuilt with
both (fuzz/sanitized_build.py) and fuzz/harness.py decodes mutated files through api.decompress in a
fresh process that runs on it; any report aborts that process. A bounded run (a fixed number of
executions from a fixed seed, so the same inputs every time); the long run is
`python3 fuzz/run_sanitized.py --seconds 3600`. Skipped, with the reason, where no C compiler or no
sanitizer runtime exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

import sanitized_build  # noqa: E402

EXECUTIONS = 1500


def _sanitizer_ready() -> str:
    """Why the sanitizer build cannot run here, or '' if it can."""
    if sanitized_build.compiler() is None:
        return "no C compiler"
    try:
        sanitized_build.runtime_libraries()
    except RuntimeError as e:
        return str(e)
    return ""


@pytest.fixture(scope="module")
def sanitized_library(tmp_path_factory) -> Path:
    why = _sanitizer_ready()
    if why:
        pytest.skip(f"sanitizer build unavailable: {why}")
    return sanitized_build.build(tmp_path_factory.mktemp("asan") / "pxnative-asan.so")


def run_harness(library: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "fuzz" / "harness.py"), *args],
                          env=sanitized_build.sanitizer_env(library), capture_output=True, text=True, timeout=900)


def test_fuzzed_files_under_sanitizers(sanitized_library, tmp_path):
    p = run_harness(sanitized_library, "--executions", str(EXECUTIONS), "--seconds", "800", "--seed", "2026",
                    "--findings", str(tmp_path))
    report = (p.stdout + p.stderr)[-4000:]
    assert p.returncode == 0, f"harness exit {p.returncode}:\n{report}"
    # the run really used the instrumented library and decoded as many files as it was asked to
    assert f"coder: {sanitized_library} (ASan instrumented: yes)" in p.stdout, report
    assert f"{EXECUTIONS} decodes" in p.stdout, report


def test_an_out_of_bounds_read_is_caught(sanitized_library, tmp_path):
    """The environment really catches a bug: reading one byte past a buffer of the instrumented
    library's own allocator aborts the process with AddressSanitizer's exit code."""
    probe = ("import ctypes, os; lib = ctypes.CDLL(os.environ['PIXZIP_NATIVE_LIB']); "
             "libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p; "
             "p = libc.malloc(16); "
             "ctypes.memmove(ctypes.create_string_buffer(32), p, 32)")
    p = subprocess.run([sys.executable, "-c", probe], env=sanitized_build.sanitizer_env(sanitized_library),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 86 and "heap-buffer-overflow" in p.stderr, p.stderr[-2000:]


def test_adaptive_tile_decoder_under_sanitizers(sanitized_library, tmp_path):
    """The adaptive stage's decoder on mutated tile streams, called directly (no container, no CRC in
    front): every byte reaches the arithmetic decoder, the context tables and the mixers."""
    p = subprocess.run([sys.executable, str(ROOT / "fuzz" / "adaptive_tiles.py"), "--executions", "1500",
                        "--seconds", "600", "--seed", "2026", "--findings", str(tmp_path)],
                       env=sanitized_build.sanitizer_env(sanitized_library), capture_output=True, text=True,
                       timeout=900)
    report = (p.stdout + p.stderr)[-4000:]
    assert p.returncode == 0, f"exit {p.returncode}:\n{report}"
    assert f"coder: {sanitized_library}" in p.stdout and "1500 adaptive tile decodes" in p.stdout, report
