"""CBSD68 at given effort levels: real .pxz bytes per sub-pixel, every round trip checked.

    PYTHONPATH=$PWD python3 bench/cbsd68_effort.py 4 [5 ...]
"""
import glob, sys, time
from pathlib import Path
from pixzip import api
from pixzip.formats import images
files = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "shared/data/cbsd68/*.png")))
for effort in map(int, sys.argv[1:]):
    tot_bytes = tot_sub = 0; t = time.process_time()
    for f in files:
        im = images.read_image(f, f)
        data, st = api.compress(im, effort=effort)
        out, _ = api.decompress(data)
        assert out.pixel_bytes() == im.pixel_bytes()
        tot_bytes += len(data); tot_sub += st.subpixels
    print(f"CBSD68 -e {effort}: {8*tot_bytes/tot_sub:.4f} bpsp over {len(files)} files ({tot_bytes} bytes), round trips exact, CPU {time.process_time()-t:.0f} s", flush=True)
