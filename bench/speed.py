"""Speed benchmark (issue 4): pixzip against JPEG XL e7, WebP and PNG on the same 768x512 photographs.

    python3 bench/speed.py [--images 6] [--repeats 3] [--json bench/results/speed.json]

Crops 768x512 from the centres of ../shared/data/urban100 and ../shared/data/photos (photos reduced x3
first, like the training data), times encode and decode of each codec on each image `--repeats` times,
and prints medians (MP/s) and the ratio to JPEG XL e7. Every round trip is checked. Run it alone: on a
2-core machine any other busy process changes the figures 2-5x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixzip import bench  # noqa: E402

W, H = 768, 512


def crops(data: Path, n: int) -> list[tuple[str, np.ndarray]]:
    sources = sorted((data / "urban100").glob("*.png"))[: (n + 1) // 2] + sorted((data / "photos").glob("*.jpg"))[: n // 2]
    out = []
    for f in sources:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if f.suffix == ".jpg":
                im = im.reduce(3)
            if im.width < W or im.height < H:
                continue
            x, y = (im.width - W) // 2, (im.height - H) // 2
            out.append((f.name, np.asarray(im.crop((x, y, x + W, y + H)))))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--codecs", default="pixzip,jxl7,webp,png")
    ap.add_argument("--workers", type=int, default=0, help="pixzip decode processes (0: all cores)")
    ap.add_argument("-m", "--model", action="append", default=[], metavar="NAME|PATH",
                    help="Also time pixzip with this model (e.g. another architecture); repeatable.")
    ap.add_argument("--model-images", type=int, default=0,
                    help="Images (and one repeat) for the extra models, which may be slow (0: as the others).")
    ap.add_argument("--json")
    args = ap.parse_args()
    import os
    from pixzip import zoo
    workers = args.workers or os.cpu_count() or 1
    imgs = crops(Path(args.data), args.images)
    table = bench.codec_table(workers=workers)
    for spec in args.model:
        m = zoo.load_model(spec)
        table[f"pixzip:{m.name}"] = lambda m=m: bench.codec_table([m], workers=workers)["pixzip"]()
    rows = {}
    for name in args.codecs.split(",") + [n for n in table if n.startswith("pixzip:")]:
        enc, dec = table[name]()
        enc_t, dec_t, bits, exact = [], [], 0, True
        extra = name.startswith("pixzip:") and args.model_images
        subset = imgs[:args.model_images] if extra else imgs
        for img_name, a in subset:
            for _ in range(1 if extra else args.repeats):
                t0 = time.perf_counter()
                out = enc(a)
                t1 = time.perf_counter()
                blob = out[0] if isinstance(out, tuple) else out
                back = dec(blob)
                t2 = time.perf_counter()
                enc_t.append(t1 - t0)
                dec_t.append(t2 - t1)
                exact &= np.array_equal(back, a)
            bits += 8 * len(blob)
            print(f"  {name} {img_name}: {8 * len(blob) / a.size:.3f} bpsp, enc {t1 - t0:.2f} s, dec {t2 - t1:.2f} s",
                  file=sys.stderr)
        mp = W * H / 1e6
        rows[name] = {"encode_mp_s": mp / statistics.median(enc_t), "decode_mp_s": mp / statistics.median(dec_t),
                      "bits_per_subpixel": bits / sum(a.size for _, a in subset), "exact": exact, "images": len(subset),
                      "encode_s_median": statistics.median(enc_t), "decode_s_median": statistics.median(dec_t)}
    ref = rows.get("jxl7")
    print("| codec | bits/sub-pixel | encode MP/s | decode MP/s | encode vs jxl7 | decode vs jxl7 | exact |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ratio = (lambda k: f"{r[k] / ref[k]:.3f}") if ref else (lambda k: "-")
        print(f"| {name} | {r['bits_per_subpixel']:.3f} | {r['encode_mp_s']:.3f} | {r['decode_mp_s']:.3f} | "
              f"{ratio('encode_mp_s')} | {ratio('decode_mp_s')} | {'yes' if r['exact'] else 'NO'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"images": [n for n, _ in imgs], "size": [W, H],
                                               "repeats": args.repeats, "workers": workers, "results": rows},
                                              indent=1))


if __name__ == "__main__":
    main()
