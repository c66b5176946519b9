"""The kinds set at -e 4 beside PNG (Pillow optimize=True, own mode) and JPEG XL e9 lossless (imagecodecs), same run.

    PYTHONPATH=$PWD python3 bench/kinds_effort.py
"""
import glob, io, os
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image
from pixzip import api
from pixzip.formats import images
files = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "shared/data/kinds/*.png")))
tp = tj = tx = 0; larger = []
for f in files:
    im = images.read_image(f, f)
    data, st = api.compress(im, effort=4)
    out, _ = api.decompress(data); assert out.pixel_bytes() == im.pixel_bytes()
    pim = Image.open(f); buf = io.BytesIO(); pim.save(buf, "PNG", optimize=True); png = len(buf.getvalue())
    arr = np.asarray(pim.convert("RGBA" if pim.mode in ("RGBA", "LA", "PA") or "transparency" in pim.info else ("L" if pim.mode in ("L", "1") else "RGB")))
    jxl = len(imagecodecs.jpegxl_encode(arr, lossless=True, effort=9))
    tp += png; tj += jxl; tx += len(data)
    if len(data) > png: larger.append((os.path.basename(f), len(data), png))
    print(f"{os.path.basename(f):28s} {pim.mode:4s} pixzip {len(data):8d}  PNG {png:8d}  JXL9 {jxl:8d}  /JXL {len(data)/jxl:.3f}", flush=True)
print(f"TOTAL pixzip -e 4 {tx}  PNG {tp}  JXL e9 {tj}  pixzip/JXL {tx/tj:.3f}  pixzip/PNG {tx/tp:.3f}  larger than PNG: {larger}")
