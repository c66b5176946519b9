"""Peak memory of `pixzip compress` and `pixzip decompress` on a 50-megapixel RGB image (issue 4).

    python3 bench/memory.py [--effort N] [--image photos|ramp] [--work /tmp/pixzip-memory] [--out bench/results/memory.md]

Builds an 8192x6144 RGB PNG from a 2x2 mosaic of the photos in ../shared/data/photos (each fitted to
4096x3072, Lanczos), then runs the two commands as real subprocesses with default options, sampling
the resident set size (VmRSS from /proc) of the command and all its worker processes every 50 ms.
Reports the peak of the sum of their proportional set sizes (PSS: shared pages such as torch's
libraries counted once, so the sum is what the machine must have) and the peak RSS of the largest
single process,
the wall time, and checks that the round trip is exact. `--effort N` passes `-e N` (default: none, the
CLI's default level). Also reports the adaptive stage's state memory (context tables, mixer weights,
APMs: what each coding thread holds at once) for a full tile at the level the effort uses.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent


def mosaic(data: Path, width: int, height: int) -> Image.Image:
    photos = sorted((data / "photos").glob("*.jpg"), key=lambda f: -f.stat().st_size)[:4]
    out = Image.new("RGB", (width, height))
    w, h = width // 2, height // 2
    for k, f in enumerate(photos):
        with Image.open(f) as im:
            out.paste(ImageOps.fit(im.convert("RGB"), (w, h), Image.Resampling.LANCZOS), ((k % 2) * w, (k // 2) * h))
    return out


def ramp(width: int, height: int) -> Image.Image:
    """Three ramps at fractional slopes (steps of 1 every few pixels, rows shifted): kinds' gradient.png, large."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 3 // 8 + y // 7), (y // 2 + x // 97), (2 * x + 3 * y) // 11], -1) % 256
    return Image.fromarray(rgb.astype(np.uint8))


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (from status) or Pss (from smaps_rollup: shared pages split among the processes sharing
    them, so the sum over processes is the memory they really use together)."""
    source = "status" if field == "VmRSS" else "smaps_rollup"
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    peak_total = peak_single = 0.0
    most = 0
    while proc.poll() is None:
        pids = tree(proc.pid)
        peak_total = max(peak_total, sum(memory_mib(p, "Pss") for p in pids))
        peak_single = max([peak_single] + [memory_mib(p, "VmRSS") for p in pids])
        most = max(most, len(pids))
        time.sleep(0.05)
    err = proc.stderr.read().decode()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    return {"seconds": time.perf_counter() - t0, "peak_total_mib": peak_total, "peak_single_mib": peak_single,
            "processes": most, "stderr": err.strip()}


def stage_memory(pxz: Path, effort: int | None = None) -> str:
    """The effort, the file's entropy stages and, for adaptive planes, the state one coding thread holds
    (native.AdaptiveState.memory for a full tile of the plane's channels)."""
    import os
    from pixzip import api
    from pixzip.efforts import DEFAULT_EFFORT
    from pixzip.formats.container import ADAPTIVE_STAGES, describe_stage
    h = api.read_header(pxz.read_bytes())
    stages = ", ".join(describe_stage(h, p) for p in range(len(h.planes)))
    out = (f"Effort -e {effort or DEFAULT_EFFORT}{'' if effort else ' (the default)'}; planes: {stages}; tile {h.tile}; "
           f"threads: {os.cpu_count()} (the CLI's default, all cores).")
    levels = sorted({lv for e, lv in zip(h.entropy, h.levels) if e in ADAPTIVE_STAGES})
    if levels:
        from pixzip.backends.native import AdaptiveState
        channels = max(c for _, c in h.planes)
        per = [f"level {lv}: {AdaptiveState(lv, h.tile * h.tile * channels).memory / 2**20:.1f} MiB" for lv in levels]
        out += (" The adaptive stage's state per coding thread (context tables, mixer weights, APMs for a "
                f"{h.tile}x{h.tile}x{channels} tile; one per thread at a time): " + ", ".join(per) + ".")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/pixzip-memory")
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--height", type=int, default=6144)
    ap.add_argument("--effort", type=int, help="pass -e N (default: the CLI's default level)")
    ap.add_argument("--image", choices=("photos", "ramp"), default="photos",
                    help="the photos' mosaic, or a synthetic ramp at fractional slopes (the LZ stage codes it: its "
                         "worst case, the whole plane compressed at once)")
    ap.add_argument("--out")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / ("big.png" if args.image == "photos" else "ramp.png")
    if not src.exists():
        im = mosaic(Path(args.data), args.width, args.height) if args.image == "photos" else ramp(args.width, args.height)
        im.save(src, compress_level=1)
    pixels = args.width * args.height
    rows = {}
    effort = ["-e", str(args.effort)] if args.effort else []
    rows["compress"] = measure([sys.executable, "-m", "pixzip", "compress", str(src), "-o", str(work / "big.pxz"), "-f",
                                *effort])
    rows["decompress"] = measure([sys.executable, "-m", "pixzip", "decompress", str(work / "big.pxz"), "-o",
                                  str(work / "back.png"), "-f"])
    with Image.open(src) as a, Image.open(work / "back.png") as b:
        exact = np.array_equal(np.asarray(a), np.asarray(b))
    size = (work / "big.pxz").stat().st_size
    lines = [f"{args.width}x{args.height} RGB ({pixels / 1e6:.1f} MP), {8 * size / (3 * pixels):.3f} bits/sub-pixel, "
             f"round trip {'exact' if exact else 'NOT EXACT'}", "",
             "| command | wall time (s) | MP/s | peak memory, all processes (PSS, MiB) | peak RSS, largest process (MiB) | processes |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| pixzip {name} | {r['seconds']:.1f} | {pixels / 1e6 / r['seconds']:.3f} | "
                     f"{r['peak_total_mib']:.0f} | {r['peak_single_mib']:.0f} | {r['processes']} |")
    lines += ["", stage_memory(work / "big.pxz", args.effort)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        opts = (f" --effort {args.effort}" if args.effort else "") + (f" --image {args.image}" if args.image != "photos" else "")
        Path(args.out).write_text(f"`PYTHONPATH=$PWD python3 bench/memory.py{opts} --out {args.out}`\n\n{text}\n")
    digest = hashlib.sha256(np.asarray(Image.open(src)).tobytes()).hexdigest()[:16]
    print(f"(source pixels sha256 {digest})", file=sys.stderr)


if __name__ == "__main__":
    main()
