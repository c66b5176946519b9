"""Interleaved A/B of two revisions of pixzip on one image: encode and decode CPU time, same bytes.

    python3 bench/ab_revisions.py BASE_REV IMAGE [--crop 512x384] [--rounds 5] [--workers 1] [-m MODEL]

On a shared machine the speed moves between runs, and not equally for every codec (bench/speed.py's
ratios to JPEG XL moved by 10 % between three runs of one session), so a change is judged by running
both revisions alternately, in fresh processes, and comparing medians of process CPU time. BASE_REV is
checked out into a temporary git worktree; the other side is this working tree. Both must produce the
same file (checked) and decode it exactly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import hashlib, sys, time
import numpy as np
from PIL import Image
from pixzip import api, zoo
from pixzip.formats.images import ImageData
if __name__ == "__main__":
    path, w, h, workers, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    a = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[:h, :w])
    img = ImageData("RGB", a.shape[1], a.shape[0], [a])
    lm = zoo.load_model(model)
    api.compress(ImageData("RGB", 32, 32, [np.ascontiguousarray(a[:32, :32])]), [lm])   # warm-up
    t0 = time.process_time(); data, _ = api.compress(img, [lm], workers=workers); t1 = time.process_time()
    out, _ = api.decompress(data, workers=workers); t2 = time.process_time()
    assert np.array_equal(out.planes[0], a), "round trip not exact"
    print(t1 - t0, t2 - t1, len(data), hashlib.sha256(data).hexdigest())
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("image")
    ap.add_argument("--crop", default="512x384", help="WxH from the top left")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="1: CPU time of one process is the whole cost")
    ap.add_argument("-m", "--model", default="pcnn-rgb-v4", help="a model both revisions have")
    args = ap.parse_args()
    w, h = (int(v) for v in args.crop.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            child = Path(tmp) / "child.py"
            child.write_text(CHILD)
            sides = {"base " + args.base: base, "this tree": ROOT}
            times = {k: [] for k in sides}
            for _ in range(args.rounds):
                for name, repo in sides.items():
                    out = subprocess.run([sys.executable, str(child), str(Path(args.image).resolve()), str(w), str(h),
                                          str(args.workers), args.model], capture_output=True, text=True, cwd=repo,
                                         env={**os.environ, "PYTHONPATH": str(repo)}, check=True)
                    enc, dec, size, digest = out.stdout.split()
                    times[name].append((float(enc), float(dec), int(size), digest))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True)
    files = {t[3] for v in times.values() for t in v}
    print(f"{args.image} {w}x{h}, {args.rounds} rounds, workers {args.workers}, model {args.model}; "
          f"{'same bytes' if len(files) == 1 else 'DIFFERENT BYTES'}")
    for name, v in times.items():
        enc, dec = statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)
        print(f"{name:>20}: encode {enc:.2f} s, decode {dec:.2f} s (CPU time, medians)")


if __name__ == "__main__":
    main()
