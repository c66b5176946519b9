"""Format v2 (constriction's range coder) against v3 (rANS lanes) on the CPU: the same photos and
model, encode and decode interleaved so that a shared machine's drift hits both alike.

    python3 bench/format_ab.py CROP.png... [--repeats 3]

Prints, per format, the total bytes and the median encode and decode time per image (2 worker
processes, as the CLI on this machine). Every round trip is checked.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixzip import api  # noqa: E402
from pixzip.formats import images  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ims = [images.split(Image.open(f).convert("RGB")) for f in args.files]
    data = {v: [api.compress(im, version=v, workers=2)[0] for im in ims] for v in (2, 3)}
    enc: dict = {2: [], 3: []}
    dec: dict = {2: [], 3: []}
    for _ in range(args.repeats):
        for v in (2, 3):
            for im, d in zip(ims, data[v]):
                t = time.perf_counter()
                api.compress(im, version=v, workers=2)
                enc[v].append(time.perf_counter() - t)
                t = time.perf_counter()
                out, _ = api.decompress(d, workers=2)
                dec[v].append(time.perf_counter() - t)
                assert out.pixel_bytes() == im.pixel_bytes()
    for v in (2, 3):
        print(f"format v{v}: bytes {sum(map(len, data[v]))}, encode median {statistics.median(enc[v]):.2f} s, "
              f"decode median {statistics.median(dec[v]):.2f} s per image")


if __name__ == "__main__":
    main()
