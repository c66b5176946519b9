"""Encode/decode speed of each effort on 768x512 crops, best of 3, wall and process CPU time.

    PYTHONPATH=$PWD python3 bench/effort_speed.py 1,2,4,5 PHOTO.jpg PHOTO2.jpg
    MODEL=pcnn-rgb-mix-v4 REPS=1 PYTHONPATH=$PWD python3 bench/effort_speed.py 7 ...   (a model preferred over the
    effort's own, e.g. an earlier ensemble in the same run; best of REPS, default 3)

The CPU-time speed (2 x megapixels / CPU seconds) is what two idle cores give when both threads stay
busy: quote it beside the wall speed when the machine is shared."""
import os, sys, time, resource
import numpy as np
from pixzip import api
from pixzip.formats.images import read_image, ImageData

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

files = sys.argv[2:]
from pixzip.zoo import load_model
MODELS = [load_model(os.environ["MODEL"])] if os.environ.get("MODEL") else []
REPS = int(os.environ.get("REPS", "3"))
efforts = [int(e) for e in sys.argv[1].split(",")]
crops = []
for f in files:
    im = read_image(f, f)
    p = im.planes[0]
    crops.append(ImageData("RGB", 768, 512, [np.ascontiguousarray(p[:512, :768])]))
for e in efforts:
    for k, im in enumerate(crops):
        best = [1e9, 1e9, 1e9, 1e9]
        for _ in range(REPS):
            t, c = time.time(), cpu()
            data, st = api.compress(im, MODELS, effort=e, workers=2)
            te, ce = time.time() - t, cpu() - c
            t, c = time.time(), cpu()
            out, h = api.decompress(data, workers=2)
            td, cd = time.time() - t, cpu() - c
            assert np.array_equal(out.planes[0], im.planes[0])
            best = [min(best[0], te), min(best[1], ce), min(best[2], td), min(best[3], cd)]
        mp = 768 * 512 / 1e6
        print(f"effort {e} crop {k}: {st.bits_per_subpixel:.4f} bpsp; encode wall {mp/best[0]:.3f} MP/s "
              f"(cpu {best[1]:.2f} s -> {2*mp/best[1]:.3f} MP/s on 2 idle cores); decode wall {mp/best[2]:.3f} "
              f"(cpu {best[3]:.2f} s -> {2*mp/best[3]:.3f}); stages {h.entropy} {h.levels}", flush=True)
