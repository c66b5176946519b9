"""Build the native coder with AddressSanitizer and UndefinedBehaviorSanitizer, for fuzzing.

    python3 fuzz/sanitized_build.py build/pxnative-asan.so

The sources and the extension's name come from pyproject.toml (`[[tool.setuptools.ext-modules]]`), so
this build follows the C files wherever they are split. pixzip loads the result instead of the
installed coder when PIXZIP_NATIVE_LIB names it; a Python process needs the sanitizer runtime loaded
first (see `sanitizer_env`), e.g.

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \\
    ASAN_OPTIONS=detect_leaks=0 PIXZIP_NATIVE_LIB=build/pxnative-asan.so python3 -m pixzip decompress x.pxz

Leak detection is off because CPython itself keeps allocations alive at exit; every other report aborts
the process (-fno-sanitize-recover=all), so a harness sees a non-zero exit and the report on stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-O1", "-g",
         "-shared", "-fPIC", "-pthread"]


def compiler() -> str | None:
    """The C compiler the build uses (CC, else cc/gcc on PATH), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def native_sources() -> list[Path]:
    """The native coder's C sources, as pyproject.toml lists them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    modules = config["tool"]["setuptools"]["ext-modules"]
    module = next(m for m in modules if m["name"] == "pixzip._pxnative")
    return [ROOT / s for s in module["sources"]]


def build(out: Path) -> Path:
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC, or install gcc)")
    sources = native_sources()
    includes = {str(s.parent) for s in sources} | {sysconfig.get_paths()["include"]}
    cmd = [cc, *FLAGS, *(f"-I{d}" for d in sorted(includes)), *map(str, sources), "-o", str(out), "-lm"]
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True)
    return out


def runtime_libraries(cc: str | None = None) -> list[str]:
    """The sanitizer runtimes to preload into a Python process (libasan first: it must come first)."""
    cc = cc or compiler()
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):
            raise RuntimeError(f"{cc} has no {name} (install the compiler's sanitizer runtime)")
        libs.append(path)
    return libs


def sanitizer_env(library: Path, base: dict | None = None) -> dict:
    """An environment that runs pixzip on the sanitized coder."""
    env = dict(os.environ if base is None else base)
    env["LD_PRELOAD"] = " ".join(runtime_libraries())
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:exitcode=86"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=87"
    env["PIXZIP_NATIVE_LIB"] = str(library)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    print(build(Path(sys.argv[1])))
