"""Tile size against speed and rate (issue 4): the default model on 768x512 photo crops, tiles 128 and 64.

    python3 bench/tile_speed.py [--images 2] [--workers 2]

Prints, per tile size, the mean encode and decode seconds per image (decode with worker processes)
and the bits per sub-pixel of the coded streams; every round trip is checked. Run it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pixzip import zoo  # noqa: E402
from pixzip.backends import codec  # noqa: E402
from speed import crops  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    imgs = crops(Path(args.data), args.images)
    model = zoo.default_model(3).net
    print("| tile | encode s/image | decode s/image | bits/sub-pixel |\n|---|---|---|---|")
    for tile in (128, 64):
        enc = dec = bits = 0.0
        for _, a in imgs:
            t0 = time.perf_counter()
            streams, _ = codec.encode_plane(model, a, tile)
            t1 = time.perf_counter()
            out = codec.decode_plane(model, a.shape[0], a.shape[1], tile, streams, workers=args.workers)
            t2 = time.perf_counter()
            assert np.array_equal(out, a), "round trip failed"
            enc, dec, bits = enc + t1 - t0, dec + t2 - t1, bits + 32 * sum(s.size for s in streams)
        n = len(imgs)
        print(f"| {tile} | {enc / n:.2f} | {dec / n:.2f} | {bits / sum(a.size for _, a in imgs):.4f} |")


if __name__ == "__main__":
    main()
