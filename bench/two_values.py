"""Images of two values (level 14, session 25: docs/ADAPTIVE.md "Planes of two values"), made here from fixed seeds:
a page of rendered serif text thresholded to black and white (in L, as mode 1 and as RGB), the same page
anti-aliased (228 grey levels: not two values, for contrast), a CBSD68 photograph dithered (Floyd-Steinberg) and
thresholded to 1 bit, lines on white, and random 8x8 blocks. Each coded by `pixzip compress -e E` (decoded and
compared) beside PNG (Pillow optimize) and JPEG XL e9 lossless (imagecodecs, round trip checked) in the same run.

    PYTHONPATH=$PWD python3 bench/two_values.py --data ../shared/data --out bench/results/two-values.md

The page needs the DejaVu Serif font (Pillow's default font otherwise: other bytes, said in the table's notes)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from held_out import coded, heading, publish, reference_sizes
from pixzip.formats.images import read_image

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore "
         "magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo "
         "consequat").split()


def text_page() -> tuple[Image.Image, str]:
    """A 1000x1300 page of 41 lines of nine seeded words, 22-pixel serif, black on white (anti-aliased)."""
    rng = np.random.default_rng(3)
    try:
        font, which = ImageFont.truetype("DejaVuSerif.ttf", 22), "DejaVu Serif 22"
    except OSError:
        font, which = ImageFont.load_default(), "Pillow's default font (DejaVu Serif missing)"
    page = Image.new("L", (1000, 1300), 255)
    draw = ImageDraw.Draw(page)
    for y in range(40, 1240, 30):
        draw.text((50, y), " ".join(rng.choice(WORDS, 9)), fill=0, font=font)
    return page, which


def make_images(folder: Path, data: Path) -> tuple[list[Path], str]:
    folder.mkdir(parents=True, exist_ok=True)
    page, font = text_page()
    black_white = page.point(lambda v: 0 if v < 128 else 255)
    photo = Image.open(data / "cbsd68" / "119082.png").convert("L")
    rng = np.random.default_rng(5)
    lines = Image.new("L", (800, 600), 255)
    draw = ImageDraw.Draw(lines)
    for _ in range(60):
        x0, x1, y0, y1 = (int(v) for v in (*rng.integers(0, 800, 2), *rng.integers(0, 600, 2)))
        draw.line([(x0, y0), (x1, y1)], fill=0, width=int(rng.integers(1, 4)))
    blocks = np.kron(rng.integers(0, 2, (37, 37)), np.ones((8, 8), np.int64)) * 255
    made = {"text-bw-L.png": black_white, "text-bw-1bit.png": black_white.convert("1"),
            "text-bw-RGB.png": black_white.convert("RGB"), "text-antialiased-L.png": page,
            "photo-dithered-1bit.png": photo.convert("1"),
            "photo-threshold-1bit.png": photo.convert("1", dither=Image.Dither.NONE),
            "lines-L.png": lines, "blocks-L.png": Image.fromarray(blocks.astype(np.uint8))}
    paths = []
    for name, im in made.items():
        im.save(folder / name)
        paths.append(folder / name)
    return paths, font


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--effort", type=int, default=4)
    ap.add_argument("--images", type=Path, default=Path("/tmp/pixzip-two-values"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    paths, font = make_images(args.images, args.data)
    rows = ["| image | mode | size | pixzip | levels (planes) | PNG | JPEG XL e9 | x PNG | x JXL e9 | s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    total = {"pixzip": 0, "png": 0, "jxl9": 0}
    for path in paths:
        image = read_image(path, path.name)
        data, header, seconds = coded(image, args.effort)
        o = reference_sizes(path)
        for k, v in (("pixzip", len(data)), *o.items()):
            total[k] += v
        rows.append(f"| {path.name} | {image.mode} | {image.width}x{image.height} | {len(data)} | "
                    f"{', '.join(map(str, header.levels))} | {o['png']} | {o['jxl9']} | {len(data) / o['png']:.3f} | "
                    f"{len(data) / o['jxl9']:.3f} | {seconds:.2f} |")
    rows.append(f"| **all** | | | **{total['pixzip']}** | | {total['png']} | {total['jxl9']} | "
                f"{total['pixzip'] / total['png']:.3f} | **{total['pixzip'] / total['jxl9']:.3f}** | |")
    head = heading(f"Images of two values, `-e {args.effort}` (docs/ADAPTIVE.md \"Planes of two values\")",
                   "PYTHONPATH=$PWD python3 bench/two_values.py --data ../shared/data --out bench/results/two-values.md",
                   "one encode")
    publish(head + "\n".join(rows) + (f"\n\n`pixzip compress -e {args.effort}` (api.compress), every file decoded and "
                                     f"compared; PNG: Pillow optimize; JPEG XL: imagecodecs lossless effort 9. The page's "
                                     f"font: {font}.\n"), args.out)

if __name__ == "__main__":
    main()
