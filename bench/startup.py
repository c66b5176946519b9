"""Start-up cost of the command line (issue 21): whole processes, as a user runs them.

A 768x512 photo (the first photograph of ../shared/data/photos, scaled to cover 768x512 and
centre-cropped) is compressed once with the default effort; then each command below runs REPEAT
times as a fresh process and the fastest and median wall times are printed, beside `python3 -c pass`
(the interpreter alone) and the in-process decode time of the same file (so that `decompress` minus
it is the start-up a user pays). The same commands run once more with torch made unimportable (a
sitecustomize on PYTHONPATH), as on a machine without it. It also lists which of torch, numpy,
constriction, tqdm, tifffile and png (pypng) a whole `pixzip decompress` imports, and the load average.

    python3 bench/startup.py [--repeat 7] [--out bench/results/startup.md]

Run it from the repository root with nothing else running: start-up is mostly imports and file reads,
so a busy machine (or a cold disk cache) inflates every figure. Modules are byte-compiled as an install
leaves them (PYTHONDONTWRITEBYTECODE is dropped; the cache goes to a temporary PYTHONPYCACHEPREFIX,
warmed by the first compression): without it every start compiles pixzip's sources again.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))           # this checkout's pixzip for the in-process decode
DATA = ROOT.parent / "shared" / "data"
W, H = 768, 512
WATCHED = ("torch", "numpy", "constriction", "tqdm", "tifffile", "png")
NO_TORCH = """import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoTorch())
"""


def photo(path: Path):
    """The first photograph, scaled to cover 768x512 and centre-cropped."""
    source = sorted((DATA / "photos").glob("*.jpg"))[0]
    with Image.open(source) as im:
        im = im.convert("RGB")
        scale = max(W / im.width, H / im.height)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        x, y = (im.width - W) // 2, (im.height - H) // 2
        im.crop((x, y, x + W, y + H)).save(path)
    return source.name


def run_timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall, CPU = user + system of the process and its threads) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def decode_once(data: bytes) -> tuple[float, float]:
    """(wall, CPU) of one in-process decode (api.decompress; imports and model loading paid before)."""
    from pixzip import api
    t0, c0 = time.perf_counter(), time.process_time()
    api.decompress(data, workers=os.cpu_count() or 1)
    return time.perf_counter() - t0, time.process_time() - c0


FIRST_DECODE = ("import os, sys, time\nfrom pixzip import api\ndata = open(sys.argv[1], 'rb').read()\n"
                "t0 = time.perf_counter()\napi.decompress(data, workers=os.cpu_count() or 1)\n"
                "print(time.perf_counter() - t0)")


def first_decode(path: str, cwd: Path, env: dict) -> float:
    """Wall time of the first api.decompress in a fresh process (imports paid before the timer; the model's
    loading and packing and the coder's first, cold, memory inside it): what a script's first decode takes."""
    out = subprocess.run([sys.executable, "-c", FIRST_DECODE, path], cwd=cwd, env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def imported_by(args: list[str], cwd: Path, env: dict) -> str:
    """Which of WATCHED a whole `pixzip ARGS` process imports."""
    code = ("import sys\nfrom pixzip.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(', '.join(m for m in {WATCHED!r} if m in sys.modules) or 'none')")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, help="Write the Markdown table here too.")
    args = ap.parse_args()
    pixzip = [sys.executable, "-m", "pixzip"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        for name in ("PIXZIP_MODELS", "PYTHONDONTWRITEBYTECODE"):
            env.pop(name, None)
        (work / "block").mkdir()
        (work / "block" / "sitecustomize.py").write_text(NO_TORCH)
        blocked = {**env, "PYTHONPATH": f"{work / 'block'}{os.pathsep}{ROOT}"}
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
            "pixzip decompress photo.png.pxz -o out.ppm": [*pixzip, "decompress", "photo.png.pxz", "-o", "out.ppm", "-f",
                                                           "-q"],
            "pixzip compress photo.png": [*pixzip, "compress", "photo.png", "-o", "again.pxz", "-f", "-q"],
        }
        rows, best, cpu = [], {}, {}
        data = (work / "photo.png.pxz").read_bytes()
        decode_once(data)                    # imports, the model's loading and packing
        decodes, firsts = [], []
        for label, cmd in commands.items():
            runs, blocked_runs = [], []
            for _ in range(args.repeat):     # interleaved, so that all see the same load
                runs.append(run_timed(cmd, work, env))
                if label.startswith("pixzip"):
                    blocked_runs.append(run_timed(cmd, work, blocked))
                if "decompress" in label:
                    decodes.append(decode_once(data))
                    firsts.append(first_decode("photo.png.pxz", work, env))
            walls = [w for w, _ in runs]
            best[label], cpu[label] = min(walls), min(c for _, c in runs)
            rows.append(f"| `{label}` | {min(walls):.3f} | {statistics.median(walls):.3f} | {cpu[label]:.3f} | "
                        f"{f'{min(w for w, _ in blocked_runs):.3f}' if blocked_runs else '-'} |")
            print(rows[-1], flush=True)
        decode, decode_cpu = min(w for w, _ in decodes), min(c for _, c in decodes)
        imported = imported_by(["decompress", "photo.png.pxz", "-o", "out2.png", "-q"], work, env)
    load_after = os.getloadavg()
    over = best["pixzip decompress photo.png.pxz"] - decode
    over_ppm = best["pixzip decompress photo.png.pxz -o out.ppm"] - decode
    first = min(firsts)
    lines = [f"Whole-process wall time (s), {args.repeat} runs each; photo: {source} scaled and centre-cropped to "
             f"{W}x{H}, compressed with the default effort; {os.cpu_count()} CPUs; `python3 bench/startup.py`. "
             "CPU: the least user + system time of a run (all threads). The last column: fastest wall time with "
             "torch made unimportable.", "",
             "| command | fastest | median | CPU | fastest, no torch |", "|---|---|---|---|---|", *rows, "",
             f"In-process decode of the same file (api.decompress, {os.cpu_count()} threads, the model loaded; fastest of "
             f"{len(decodes)}, interleaved with the decompress runs): {decode:.3f} s wall, {decode_cpu:.3f} s CPU. "
             f"`pixzip decompress` takes {over:.3f} s more wall time (fastest against fastest; writing the PNG "
             f"included) and {cpu['pixzip decompress photo.png.pxz'] - decode_cpu:.3f} s more CPU; `-o out.ppm` "
             f"(no compression of the output) {over_ppm:.3f} s more wall, "
             f"{cpu['pixzip decompress photo.png.pxz -o out.ppm'] - decode_cpu:.3f} s more CPU.",
             f"The first api.decompress in a fresh process (imports before the timer; the model's loading and "
             f"packing and the coder's cold memory inside it; fastest of {len(firsts)}): {first:.3f} s wall; "
             f"`pixzip decompress` takes {best['pixzip decompress photo.png.pxz'] - first:.3f} s more (`-o out.ppm` "
             f"{best['pixzip decompress photo.png.pxz -o out.ppm'] - first:.3f} s).",
             f"Imported by a whole `pixzip decompress` (of {', '.join(WATCHED)}): {imported}.",
             f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
             f"after: {', '.join(f'{x:.2f}' for x in load_after)}."]
    print("\n".join(lines[-5:]))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
