"""Where GPU coding time goes (issue 4): torch.profiler and cProfile over one batch encode and decode.

    python3 bench/profile_gpu.py CROP_DIR OUT [--limit N]      (on a machine with CUDA)

Writes OUT/encode.txt and OUT/decode.txt: the CUDA kernels by total device time, the host-side torch
ops by total CPU time, and the Python functions by cumulative time (cProfile)."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixzip import api, codec, zoo  # noqa: E402
from pixzip.images import ImageData  # noqa: E402


def profiled(fn, out: Path):
    """Run fn twice (a warm-up, then profiled): report to `out`."""
    fn()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        torch.cuda.synchronize()
    t_prof = time.perf_counter() - t0
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    fn()
    torch.cuda.synchronize()
    pr.disable()
    t_cprof = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    plain = time.perf_counter() - t0
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(45)
    table = prof.key_averages()
    with open(out, "w") as f:
        f.write(f"plain {plain:.3f} s; under torch.profiler {t_prof:.3f} s; under cProfile {t_cprof:.3f} s\n"
                f"graph stats {codec.GRAPH_STATS}\n\n")
        f.write(table.table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=60))
        f.write("\n\n")
        f.write(table.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60))
        f.write("\n\n" + s.getvalue())
    print(out, f"plain {plain:.3f} s", flush=True)


def main():
    crop_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    limit = int(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else 0
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(crop_dir.glob("*.png"))[:limit or None]
    images = [ImageData("RGB", *Image.open(f).size, [np.asarray(Image.open(f).convert("RGB"))]) for f in files]
    m = zoo.load_model(zoo.DEFAULTS[3])
    coded = api.compress_many(images, [m], device="cuda")
    profiled(lambda: api.compress_many(images, [m], device="cuda"), out / "encode.txt")
    profiled(lambda: api.decompress_many([d for d, _ in coded], [m], device="cuda"), out / "decode.txt")


if __name__ == "__main__":
    main()
