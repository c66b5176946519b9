"""16-bit rates: pixzip (format v4: the top significant byte through the default model, the low bits
through pixzip.lowbits) against PNG 16-bit and JPEG XL e9 lossless, on 16-bit images made here.

There are no real 16-bit photographs in the data, so they are made, and the recipe is fixed in
advance (nothing here is tuned to them):
- `photo-*`: every 6th JPEG of data/photos in name order, decoded by Pillow to 8-bit RGB, cropped to a
  multiple of 4, area-averaged 4x4 in float64 (real extra precision: a mean of 16 samples has 1/16
  steps), scaled by 65535/255 and rounded to uint16;
- `cbsd68-x257`: the first CBSD68 image (name order), each 8-bit sample times 257 (the usual 8 -> 16-bit
  conversion; pixzip finds it exactly and stores no low bytes).
Every pixzip file is decoded and compared; JPEG XL and PNG round trips are checked too.

    python3 bench/sixteen_bit.py --out bench/results/sixteen_bit.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def photo_16bit(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    h, w = (a.shape[0] // 4) * 4, (a.shape[1] // 4) * 4
    mean = a[:h, :w].reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3))
    return np.rint(mean * (65535 / 255)).astype(np.uint16)


def test_images(every: int) -> list[tuple[str, np.ndarray]]:
    photos = sorted((DATA / "photos").glob("*.jpg"))[::every]
    out = [(f"photo-{p.stem.split('__')[-1]}", photo_16bit(p)) for p in photos]
    first = sorted((DATA / "cbsd68").glob("*.png"))[0]
    out.append((f"cbsd68-x257-{first.stem}", np.asarray(Image.open(first).convert("RGB")).astype(np.uint16) * 257))
    return out


def pixzip_size(a: np.ndarray) -> tuple[int, int, str]:
    """(file bytes, low-part bytes, split) for the image coded with the default models."""
    from pixzip import api
    from pixzip.formats import images
    image = images.ImageData("RGB", a.shape[1], a.shape[0], [a], depth=16)
    data, _ = api.compress(image, workers=2)
    back, header = api.decompress(data, workers=2)
    assert np.array_equal(back.planes[0], a), "pixzip round trip failed"
    low = sum(header.stream_sizes[-header.low_streams:]) if header.low_streams else 0
    split = header.splits[0]
    kind = {0: "split", 1: "x257", 2: f"ranked {len(split.values) if split.values is not None else 0} values"}[split.kind]
    return len(data), low, f"{kind}, shift {split.shift}, low bits {split.low_bits}"


def png_size(a: np.ndarray) -> int:
    import imagecodecs as ic
    data = ic.png_encode(a, level=9)
    assert np.array_equal(ic.png_decode(data), a)
    return len(data)


def jxl_size(a: np.ndarray) -> int:
    import imagecodecs as ic
    data = ic.jpegxl_encode(a, lossless=True, effort=9)
    assert np.array_equal(ic.jpegxl_decode(data), a)
    return len(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=int, default=6, help="use every N-th photo (name order)")
    ap.add_argument("--out", type=Path, help="write the Markdown table here")
    args = ap.parse_args()
    rows, totals = [], np.zeros(4)
    for name, a in test_images(args.every):
        t0 = time.perf_counter()
        pxz, low, split = pixzip_size(a)
        seconds = time.perf_counter() - t0
        png, jxl = png_size(a), jxl_size(a)
        n = a.size
        totals += [8 * pxz, 8 * png, 8 * jxl, n]
        rows.append(f"| {name} | {a.shape[1]}x{a.shape[0]} | {8 * pxz / n:.3f} ({8 * low / n:.3f} low, split {split}) "
                    f"| {8 * png / n:.3f} | {8 * jxl / n:.3f} | {pxz / jxl:.3f} | {seconds:.1f} |")
        print(rows[-1], flush=True)
    table = ["| image | size | pixzip bits/sample (of which low part; split) | PNG 16-bit (level 9) "
             "| JPEG XL e9 lossless | pixzip / JPEG XL | pixzip encode+decode s |",
             "|---|---|---|---|---|---|---|", *rows,
             f"| **all** | | **{totals[0] / totals[3]:.3f}** | {totals[1] / totals[3]:.3f} | {totals[2] / totals[3]:.3f} "
             f"| {totals[0] / totals[2]:.3f} | |"]
    print("\n".join(table))
    if args.out:
        args.out.write_text(__doc__.split("\n\n")[1] + "\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
