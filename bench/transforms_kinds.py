"""pixzip with and without pixzip.transforms on the kinds set, against PNG, WebP and JPEG XL e9, one run.

For each image (its own mode: L and P stay L and P):
  today       api.compress(images.split(Image.open(path))), default effort
  transforms  transforms.choose(image, try_coding=api.compress): every candidate chain coded, the
              smallest (file + record bytes; the identity has no record) kept
  estimate    the chain transforms.choose picks without a coder (its residual estimate), at its coded size
  +stored     projected: transforms, with each tile's stream replaced by the raw bit-packed tile
              (pack_bits at the plane's level count, +1 byte per tile for the mode) where smaller
Every pixzip file is decoded with api.decompress and, for transforms, inverted through the record's
bytes; the image must equal the original exactly (planes, mode, palette, transparency, ICC). PNG,
WebP and JPEG XL round trips are checked too.

    cd /work/wt20t && PYTHONPATH=$PWD nice python3 bench/transforms_kinds.py /work/shared/data/kinds \
        --out bench/results/transforms-kinds.md
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixzip import api
from pixzip.backends import codec
from pixzip.formats import images, stored
from pixzip.formats import transforms as T
from pixzip.bench import _expand, _imagecodecs, _squeeze


def same_image(a: images.ImageData, b: images.ImageData) -> bool:
    return (a.mode, a.width, a.height, a.icc, a.palette_mode, a.palette, a.transparency) == \
        (b.mode, b.width, b.height, b.icc, b.palette_mode, b.palette, b.transparency) and \
        len(a.planes) == len(b.planes) and all(np.array_equal(p, q) for p, q in zip(a.planes, b.planes))


def png_size(im: Image.Image) -> int:
    buf = io.BytesIO()
    kw = {"transparency": im.info["transparency"]} if "transparency" in im.info else {}
    im.save(buf, "PNG", optimize=True, **kw)
    back = Image.open(io.BytesIO(buf.getvalue()))
    assert back.mode == im.mode and np.array_equal(np.asarray(back), np.asarray(im)), "PNG round trip"
    if im.mode == "P":
        assert back.getpalette() == im.getpalette(), "PNG palette"
    return len(buf.getvalue())


def pixels_for_others(im: Image.Image) -> np.ndarray:
    """The array WebP / JPEG XL get: the image's own samples; a P image as the colours it shows."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def webp_size(a: np.ndarray) -> int | None:
    if a.shape[2] not in (3, 4):                 # WebP has no grey mode: RGB/RGBA only, as briefed
        return None
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "WEBP", lossless=True, quality=100, method=6, exact=True)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), a), "WebP round trip"
    return len(buf.getvalue())


def jxl9_size(a: np.ndarray) -> int:
    ic = _imagecodecs()                           # as pixzip/bench.py's _jxl(9)
    data = ic.jpegxl_encode(_squeeze(a), lossless=True, effort=9)
    assert np.array_equal(_expand(ic.jpegxl_decode(data)), a), "JPEG XL round trip"
    return len(data)


def decoded_exactly(data: bytes, original: images.ImageData, record: T.TransformRecord) -> bool:
    decoded, _ = api.decompress(data)
    return same_image(T.TransformRecord.from_bytes(record.to_bytes()).inverse(decoded), original)


def projected_with_stored(data: bytes, coded: images.ImageData) -> int:
    """File size if each tile's stream were replaced by its raw packing where that is smaller."""
    header = api.read_header(data)
    grid = [(h, w) for _, _, h, w in codec.tile_grid(coded.height, coded.width, header.tile)]
    sizes = iter(header.stream_sizes)
    total = len(data) - sum(header.stream_sizes)
    assert len(header.stream_sizes) == len(grid) * len(coded.planes)
    for plane in coded.planes:
        bits = stored.bits_for_levels(stored.levels_needed(plane))
        for h, w in grid:
            total += min(next(sizes), 1 + stored.stored_size(h * w * plane.shape[2], bits))
    return total


def run_image(path: Path) -> dict:
    im = Image.open(path)
    im.load()
    original = images.split(im)
    row = {"name": path.stem, "mode": im.mode, "pixels": im.width * im.height,
           "subpixels": im.width * im.height * sum(p.shape[2] for p in original.planes)}
    t = time.time()
    today, _ = api.compress(original)
    row["today_s"] = time.time() - t
    assert decoded_exactly(today, original, T.IDENTITY), f"{path.name}: today's round trip"
    row["today"] = len(today)

    coded_files: dict[tuple, bytes] = {}

    def try_coding(candidate: images.ImageData) -> bytes:
        key = (candidate.mode, hashlib.sha256(candidate.pixel_bytes()).digest())
        if key not in coded_files:
            coded_files[key] = api.compress(candidate)[0]
        return coded_files[key]

    t = time.time()
    coded, record = T.choose(original, try_coding)
    row["choose_s"] = time.time() - t
    data = try_coding(coded)
    assert decoded_exactly(data, original, record), f"{path.name}: transformed round trip"
    overhead = 0 if record.is_identity else len(record.to_bytes())
    row.update(chain=record.describe(), record=overhead, transforms=len(data) + overhead,
               candidates=len(coded_files), stored=projected_with_stored(data, coded) + overhead)
    est_coded, est_record = T.choose(original)
    row["estimate"] = len(try_coding(est_coded)) + (0 if est_record.is_identity else len(est_record.to_bytes()))
    row["estimate_chain"] = est_record.describe()
    assert decoded_exactly(try_coding(est_coded), original, est_record), f"{path.name}: estimate round trip"

    row["png"] = png_size(im)
    other = pixels_for_others(im)
    row["webp"] = webp_size(other)
    row["jxl9"] = jxl9_size(other)
    return row


def markdown(rows: list[dict], command: str) -> str:
    def ratio(a, b):
        return f"{a / b:.3f}"
    lines = ["| image | mode | PNG | WebP m6 | JPEG XL e9 | pixzip today | **transforms** | ×PNG | ×JXL e9 | "
             "chain (record bytes) | estimate pick | +stored (projected) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = " ⚠" if r["transforms"] > r["png"] else ""
        lines.append(f"| {r['name']} | {r['mode']} | {r['png']} | {r['webp'] if r['webp'] is not None else '—'} | "
                     f"{r['jxl9']} | {r['today']} | **{r['transforms']}**{flag} | {ratio(r['transforms'], r['png'])} | "
                     f"{ratio(r['transforms'], r['jxl9'])} | {r['chain']} ({r['record']}) | {r['estimate']} | "
                     f"{r['stored']} |")
    tot = {k: sum(r[k] for r in rows) for k in ("png", "jxl9", "today", "transforms", "estimate", "stored")}
    webp_rows = [r for r in rows if r["webp"] is not None]
    lines.append(f"| **total** ({len(rows)}) | | {tot['png']} | ({sum(r['webp'] for r in webp_rows)} over "
                 f"{len(webp_rows)}) | {tot['jxl9']} | {tot['today']} | **{tot['transforms']}** | "
                 f"{ratio(tot['transforms'], tot['png'])} | {ratio(tot['transforms'], tot['jxl9'])} | | "
                 f"{tot['estimate']} | {tot['stored']} |")
    larger = [r for r in rows if r["transforms"] > r["png"]]
    larger_today = [r for r in rows if r["today"] > r["png"]]
    summary = [
        "",
        "| total bytes | vs JPEG XL e9 | vs PNG | files larger than PNG |",
        "|---|---|---|---|",
        f"| pixzip today | {ratio(tot['today'], tot['jxl9'])} | {ratio(tot['today'], tot['png'])} | "
        f"{len(larger_today)} |",
        f"| pixzip + transforms (trial) | {ratio(tot['transforms'], tot['jxl9'])} | "
        f"{ratio(tot['transforms'], tot['png'])} | {len(larger)} |",
        f"| pixzip + transforms (estimate pick) | {ratio(tot['estimate'], tot['jxl9'])} | "
        f"{ratio(tot['estimate'], tot['png'])} | {sum(r['estimate'] > r['png'] for r in rows)} |",
        f"| + stored tiles (projected) | {ratio(tot['stored'], tot['jxl9'])} | {ratio(tot['stored'], tot['png'])} | "
        f"{sum(r['stored'] > r['png'] for r in rows)} |",
        "",
        "Still larger than PNG with transforms: " + (", ".join(
            f"{r['name']} ({r['transforms'] / r['png']:.2f}×)" for r in larger) or "none") + ".",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines + summary) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--only", default="", help="substring of the image names to run")
    args = ap.parse_args(argv)
    rows = []
    for path in sorted(args.data.glob("*.png")):
        if args.only not in path.name:
            continue
        rows.append(run_image(path))
        r = rows[-1]
        print(f"{r['name']:24s} {r['mode']:4s} png {r['png']:7d} jxl9 {r['jxl9']:7d} today {r['today']:7d} "
              f"transforms {r['transforms']:7d} est {r['estimate']:7d} stored {r['stored']:7d}  {r['chain']}",
              flush=True)
    command = "PYTHONPATH=$PWD nice python3 bench/transforms_kinds.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = markdown(rows, command)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
