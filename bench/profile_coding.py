"""Where coding time goes: cProfile of one batched encode and one batched decode of the crops.

    python3 bench/profile_coding.py DIR [--device cuda] [--limit N] [--top 25] [--kernels]

DIR holds PNG crops (bench/gpu.py save-crops). Indicative only (the profiler slows Python down); the
speeds to quote come from bench/speed.py and bench/gpu.py. With --kernels (a GPU), torch.profiler's
tables follow: CUDA kernels by device time, host-side calls (graph launches, copies) by CPU time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixzip import api  # noqa: E402
from pixzip.formats.images import ImageData  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--kernels", action="store_true", help="also torch.profiler's kernel and host-call tables")
    args = ap.parse_args()
    files = sorted(Path(args.dir).glob("*.png"))[:args.limit or None]
    images = [ImageData("RGB", *Image.open(f).size, [np.asarray(Image.open(f).convert("RGB"))]) for f in files]
    api.compress(images[0], device=args.device)                 # warm-up
    for what, fn in [("encode", lambda: api.compress_many(images, device=args.device)),
                     ("decode", lambda: api.decompress_many([d for d, _ in coded], device=args.device))]:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        result = fn()
        prof.disable()
        print(f"== {what}: {time.perf_counter() - t0:.2f} s for {len(images)} images", flush=True)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
        if what == "encode":
            coded = result
        if args.kernels:
            kernel_tables(fn, args.top)


def kernel_tables(fn, top: int):
    """torch.profiler over one more call of fn: where the device's time goes, and the host's."""
    import torch
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        torch.cuda.synchronize()
    table = prof.key_averages()
    print(table.table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=60))
    print(table.table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=60), flush=True)


if __name__ == "__main__":
    main()
