"""Build the ASan + UBSan coder and run the fuzz harness on it in a fresh process (the sanitizer runtime
must be loaded before Python starts):

    python3 fuzz/run_sanitized.py --seconds 3600 --seed 7

Arguments after the script's name go to fuzz/harness.py, or with `--target adaptive` first, to
fuzz/adaptive_tiles.py (the adaptive stage's tile decoder called directly). Exit status: the harness's (0: no finding), or
the sanitizer's (86: AddressSanitizer, 87: UndefinedBehaviorSanitizer) with its report on stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sanitized_build import ROOT, build, sanitizer_env  # noqa: E402


TARGETS = {"container": "harness.py", "adaptive": "adaptive_tiles.py"}


def run(harness_args: list[str], library: Path | None = None, target: str = "container",
        **popen) -> subprocess.CompletedProcess:
    library = library or build(ROOT / "build" / "pxnative-asan.so")
    return subprocess.run([sys.executable, str(HERE / TARGETS[target]), *harness_args],
                          env=sanitizer_env(library), **popen)


if __name__ == "__main__":
    args = sys.argv[1:]
    target = "container"
    if args[:1] == ["--target"]:
        target, args = args[1], args[2:]
    sys.exit(run(args, target=target).returncode)
