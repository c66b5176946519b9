"""GPU coding benchmark and cross-device check (issue 4), for a machine with CUDA.

    python3 bench/gpu.py save-crops DIR [--images 8]       (here: 768x512 crops as speed.py takes them)
    python3 bench/gpu.py run DIR --out OUT [-m MODEL]... [--mirror] [--canvas-pixels N]   (there: times and checks, writes OUT/)
    python3 bench/gpu.py verify DIR --out OUT [-m MODEL]... (back here: OUT's files against this machine)

`run`, for the default RGB model and each -m model (PIXZIP_CUDA_GRAPHS=0: decode without CUDA graphs;
PIXZIP_DEVICE_LANES=0: the rANS lanes on the host): encodes the crops as one batch on the GPU (median
of --repeats runs after a warm-up), checks that the first --cpu-images files are byte for byte what the
CPU encoder writes, decodes the batch on the GPU and checks every pixel, decodes one GPU-encoded file on
the CPU, and writes the GPU-encoded files to OUT (so that another machine can decode them and compare
its own encoding). Prints a Markdown table; OUT/gpu.json holds the figures. `verify` decodes every
OUT/*.pxz on this machine and encodes its crop here, comparing pixels and bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixzip import api, zoo  # noqa: E402
from pixzip.backends import codec  # noqa: E402
from pixzip.formats.images import ImageData  # noqa: E402


def save_crops(out: Path, n: int):
    sys.path.insert(0, str(ROOT / "bench"))
    from speed import crops
    out.mkdir(parents=True, exist_ok=True)
    for name, a in crops(ROOT.parent / "shared" / "data", n):
        Image.fromarray(a).save(out / f"{Path(name).stem}.png")


def timed(fn, repeats: int):
    """(median seconds, last result) of `repeats` calls, CUDA work included."""
    import torch
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times, result = [], None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def run(crop_dir: Path, out: Path, models: list[str], repeats: int, cpu_images: int, device: str, limit: int,
        mirror: bool = False):
    import torch
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(crop_dir.glob("*.png"))[:limit or None]
    images = [ImageData("RGB", *Image.open(f).size, [np.asarray(Image.open(f).convert("RGB"))]) for f in files]
    if mirror:      # a bigger batch: the crops and their mirror images (only the crops' files are kept)
        images += [ImageData("RGB", im.width, im.height, [np.ascontiguousarray(im.planes[0][:, ::-1])]) for im in images]
    mp = sum(im.width * im.height for im in images) / 1e6
    workers = os.cpu_count() or 1       # the encoder's coder processes (the network runs on the device)
    rows = []
    for name in [zoo.DEFAULTS[3], *models]:
        m = zoo.load_model(name)
        api.compress(images[0], [m], device=device)                      # warm-up: CUDA context, cuBLAS
        enc_s, coded = timed(lambda: api.compress_many(images, [m], device=device, workers=workers), repeats)
        same = [api.compress(im, [m], device="cpu")[0] == data for im, (data, _) in zip(images[:cpu_images], coded)]
        dec_s, decoded = timed(lambda: api.decompress_many([d for d, _ in coded], [m], device=device), repeats)
        exact = all(d[0].pixel_bytes() == im.pixel_bytes() for d, im in zip(decoded, images))
        cpu_decoded = api.decompress(coded[0][0], [m], device="cpu")[0].pixel_bytes() == images[0].pixel_bytes()
        for f, (data, _) in zip(files, coded):     # the crops' files (not their mirror images')
            (out / f"{f.stem}.{m.name}.pxz").write_bytes(data)
        bits = 8 * sum(len(d) for d, _ in coded) / (3e6 * mp)
        rows.append({"model": m.name, "images": len(images), "megapixels": round(mp, 3), "bits_per_subpixel": round(bits, 4),
                     "encode_mp_s": round(mp / enc_s, 3), "decode_mp_s": round(mp / dec_s, 3),
                     "gpu_bytes_equal_cpu_bytes": f"{sum(same)}/{len(same)}", "gpu_decode_exact": exact,
                     "gpu_file_decodes_on_cpu": cpu_decoded, "cuda_graphs": dict(codec.GRAPH_STATS),
                     "lanes_on_device": device == "cuda" and os.environ.get("PIXZIP_DEVICE_LANES", "1") != "0",
                     "canvas_pixels": codec.MAX_BATCH_PIXELS_CUDA})
        print(rows[-1], flush=True)
        name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
        info = {"device": name, "torch": torch.__version__, "python": platform.python_version(), "repeats": repeats,
                "coder_workers": workers, "max_batch_pixels": codec.MAX_BATCH_PIXELS_CUDA, "rows": rows}
        (out / "gpu.json").write_text(json.dumps(info, indent=1))    # after each model: a timeout keeps the rest
    print(f"\n{info['device']}, torch {info['torch']}; {len(images)} images of 768x512 as one batch; medians of {repeats}"
          f"; lanes on the {'device' if rows[-1]['lanes_on_device'] else 'host'}\n")
    print("| model | bits/sub-pixel | encode MP/s | decode MP/s | GPU bytes = CPU bytes | GPU decode exact | GPU file on CPU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['bits_per_subpixel']:.4f} | {r['encode_mp_s']:.3f} | {r['decode_mp_s']:.3f} | "
              f"{r['gpu_bytes_equal_cpu_bytes']} | {r['gpu_decode_exact']} | {r['gpu_file_decodes_on_cpu']} |")


def verify(crop_dir: Path, out: Path, models: list[str]):
    """Decode the files another machine wrote and re-encode their crops here: the same pixels, and the
    same bytes, or the two machines did not compute the same integers."""
    extra = [zoo.load_model(m) for m in models]
    by_name = {m.name: m for m in extra}
    results = []
    for f in sorted(out.glob("*.pxz")):
        crop, name = f.stem.rsplit(".", 1)           # CROP.MODEL.pxz
        with Image.open(crop_dir / f"{crop}.png") as im:
            image = ImageData("RGB", *im.size, [np.asarray(im.convert("RGB"))])
        m = by_name.get(name) or zoo.load_model(name)
        data = f.read_bytes()
        decoded = api.decompress(data, extra)[0].pixel_bytes() == image.pixel_bytes()
        same = api.compress(image, [m])[0] == data
        results.append(decoded and same)
        print(f"{f.name}: decodes here {decoded}, encodes here to the same bytes {same}", flush=True)
    print(f"{sum(results)}/{len(results)} files decode exactly and re-encode byte for byte on this machine")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("verb", choices=["save-crops", "run", "verify"])
    ap.add_argument("dir")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--out", default="gpu-out")
    ap.add_argument("-m", "--model", action="append", default=[])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-images", type=int, default=2, help="crops also encoded on the CPU to compare bytes")
    ap.add_argument("--device", default="cuda", help="where the timed coding runs (cpu: to try the script)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N crops")
    ap.add_argument("--mirror", action="store_true", help="also code the crops' mirror images (a bigger batch)")
    ap.add_argument("--canvas-pixels", type=int, default=0, help="pixels per GPU canvas (default: the codec's)")
    args = ap.parse_args()
    if args.verb == "save-crops":
        save_crops(Path(args.dir), args.images)
    elif args.verb == "verify":
        verify(Path(args.dir), Path(args.out), args.model)
    else:
        if args.canvas_pixels:
            codec.MAX_BATCH_PIXELS_CUDA = args.canvas_pixels
        run(Path(args.dir), Path(args.out), args.model, args.repeats, args.cpu_images, args.device, args.limit,
            args.mirror)


if __name__ == "__main__":
    main()
