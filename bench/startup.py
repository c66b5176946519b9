"""Start-up cost of the command line (issue 21): whole processes, as a user runs them.

A 768x512 photo (the centre crop of the first urban100 image, as bench/speed.py crops) is compressed
once; then each command below runs REPEAT times as a fresh process and the fastest and median wall
times are printed, beside `python3 -c pass` (the interpreter alone) and the in-process decode time
of the same file. It also lists which of torch / numpy the command line imports at start.

    python3 bench/startup.py [--repeat 5] [--out bench/results/startup.md]

Run it from the repository root with nothing else running: start-up is mostly imports and file reads,
so a busy machine (or a cold disk cache) inflates every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
W, H = 768, 512


def photo(path: Path):
    """The centre 768x512 crop of the first urban100 image."""
    source = sorted((DATA / "urban100").glob("*.png"))[0]
    with Image.open(source) as im:
        x, y = (im.width - W) // 2, (im.height - H) // 2
        im.convert("RGB").crop((x, y, x + W, y + H)).save(path)
    return source.name


def wall_times(cmd: list[str], repeat: int, cwd: Path, env: dict) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def in_process_decode(pxz: Path, repeat: int) -> float:
    """Fastest decode of the file inside one process (imports and model loading paid before timing)."""
    from pixzip import api
    data = pxz.read_bytes()
    api.decompress(data, workers=os.cpu_count() or 1)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        api.decompress(data, workers=os.cpu_count() or 1)
        best = min(best, time.perf_counter() - t0)
    return best


def imported_at_start(env: dict) -> str:
    code = "import sys, pixzip.cli; print(', '.join(m for m in ('torch', 'numpy') if m in sys.modules) or 'none')"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, help="Write the Markdown table here too.")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PIXZIP_MODELS", None)
    pixzip = [sys.executable, "-m", "pixzip"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = photo(work / "photo.png")
        subprocess.run([*pixzip, "compress", "photo.png", "-q"], cwd=work, env=env, check=True)
        commands = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "python3 -c 'import pixzip'": [sys.executable, "-c", "import pixzip"],
            "pixzip --version": [*pixzip, "--version"],
            "pixzip --help": [*pixzip, "--help"],
            "pixzip info photo.png.pxz": [*pixzip, "info", "photo.png.pxz"],
            "pixzip test photo.png.pxz": [*pixzip, "test", "photo.png.pxz", "-q"],
            "pixzip decompress photo.png.pxz": [*pixzip, "decompress", "photo.png.pxz", "-o", "out.png", "-f", "-q"],
        }
        rows = []
        for label, cmd in commands.items():
            t = wall_times(cmd, args.repeat, work, env)
            rows.append(f"| `{label}` | {min(t):.3f} | {statistics.median(t):.3f} |")
            print(rows[-1], flush=True)
        decode = in_process_decode(work / "photo.png.pxz", args.repeat)
    lines = [f"Whole-process wall time (s), {args.repeat} runs each; photo: the centre {W}x{H} crop of "
             f"urban100 {source}, default model; {os.cpu_count()} CPUs; `python3 bench/startup.py`.", "",
             "| command | fastest | median |", "|---|---|---|", *rows, "",
             f"In-process decode of the same file (api.decompress, fastest of {args.repeat}): {decode:.3f} s.",
             f"Imported by `import pixzip.cli` at start: {imported_at_start(env)}."]
    print("\n".join(lines[-2:]))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
